"""The two 24 x 24 map tracks: PrimeDepth depth and Sapiens body-part labels (576 dims each, row-major)."""

from __future__ import annotations

import numpy as np

from extractors.base import TrackLayout

MAP_SIZE = 24
# Sapiens' body-part classes (its Goliath segmentation head: 28 classes, background included), in class-id order.
GOLIATH_CLASSES: tuple[str, ...] = (
    "Background", "Apparel", "Face_Neck", "Hair", "Left_Foot", "Left_Hand", "Left_Lower_Arm",
    "Left_Lower_Leg", "Left_Shoe", "Left_Sock", "Left_Upper_Arm", "Left_Upper_Leg", "Lower_Clothing",
    "Right_Foot", "Right_Hand", "Right_Lower_Arm", "Right_Lower_Leg", "Right_Shoe", "Right_Sock",
    "Right_Upper_Arm", "Right_Upper_Leg", "Torso", "Upper_Clothing", "Lower_Lip", "Upper_Lip",
    "Lower_Teeth", "Upper_Teeth", "Tongue",
)  # fmt: skip


def _grid_names(prefix: str) -> tuple[str, ...]:
    return tuple(f"{prefix}.r{r:02d}c{c:02d}" for r in range(MAP_SIZE) for c in range(MAP_SIZE))


DEPTH_LAYOUT = TrackLayout("primedepth", _grid_names("primedepth"))
PARTS_LAYOUT = TrackLayout("sapiens", _grid_names("sapiens"))
N_PART_CLASSES = len(GOLIATH_CLASSES)  # 28, background included


def depth_to_vector(depth: np.ndarray) -> np.ndarray:
    """(T, 24, 24) relative depth in [0, 1] (1 nearest, 0 background / farthest) -> (T, 576)."""
    depth = np.asarray(depth, dtype=np.float32)
    if depth.shape[1:] != (MAP_SIZE, MAP_SIZE):
        raise ValueError(f"depth maps must be (T, {MAP_SIZE}, {MAP_SIZE}), got {depth.shape}")
    if depth.size and (depth.min() < 0 or depth.max() > 1):
        raise ValueError("depth maps must be normalised to [0, 1]")
    return depth.reshape(len(depth), -1)


def parts_to_vector(labels: np.ndarray) -> np.ndarray:
    """(T, 24, 24) integer Goliath class ids (0 background .. 27) -> (T, 576) float."""
    labels = np.asarray(labels)
    if labels.shape[1:] != (MAP_SIZE, MAP_SIZE):
        raise ValueError(f"part maps must be (T, {MAP_SIZE}, {MAP_SIZE}), got {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= N_PART_CLASSES):
        raise ValueError(f"part labels must be class ids in [0, {N_PART_CLASSES})")
    return labels.reshape(len(labels), -1).astype(np.float32)


# --- the signer crop of a dense map and its reduction to 24 x 24 cells ------------------------------------------
# Rule, the same for every real map backend: the signer is the largest connected foreground region of the frame
# (Sapiens: pixels not labelled Background; depth: pixels nearer than Otsu's threshold on the frame's inverse
# depth); the crop is the square of side CROP_MARGIN x the longer side of that region's box, centred on it, in the
# map's own pixels (parts of it outside the image are background). Each of the 24 x 24 cells is read from
# SAMPLES x SAMPLES evenly spaced points inside it.
CROP_MARGIN = 1.2
SAMPLES = 8


def foreground_square(foreground: np.ndarray) -> tuple[float, float, float] | None:
    """(x0, y0, side) of the square signer crop around the largest connected region of the (H, W) bool mask, in
    pixels; None when the mask is empty."""
    import cv2

    n, comp, stats, _ = cv2.connectedComponentsWithStats(foreground.astype(np.uint8), connectivity=8)
    if n <= 1:
        return None
    k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h = (float(v) for v in stats[k, :4])  # left, top, width, height
    side = CROP_MARGIN * max(w, h)
    return x + w / 2 - side / 2, y + h / 2 - side / 2, side


def _cell_samples(shape: tuple[int, int], square: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel (row, col) indices of the SAMPLES^2 points of every cell, (576, SAMPLES^2) each; -1 outside the image."""
    x0, y0, side = square
    n = MAP_SIZE * SAMPLES
    t = (np.arange(n) + 0.5) / n * side  # offsets of the sample points inside the crop
    cols = np.floor(x0 + t).astype(np.int64)
    rows = np.floor(y0 + t).astype(np.int64)
    cols[(cols < 0) | (cols >= shape[1])] = -1
    rows[(rows < 0) | (rows >= shape[0])] = -1
    r = np.broadcast_to(rows[:, None], (n, n)).reshape(MAP_SIZE, SAMPLES, MAP_SIZE, SAMPLES)
    c = np.broadcast_to(cols[None, :], (n, n)).reshape(MAP_SIZE, SAMPLES, MAP_SIZE, SAMPLES)
    order = (0, 2, 1, 3)  # (cell row, cell col, sample row, sample col)
    return (r.transpose(order).reshape(MAP_SIZE * MAP_SIZE, -1), c.transpose(order).reshape(MAP_SIZE * MAP_SIZE, -1))


def majority_cells(labels: np.ndarray, square: tuple[float, float, float]) -> np.ndarray:
    """(24, 24) class ids: the most frequent label among each cell's sample points (outside the image counts as
    Background; a tie goes to the lower class id)."""
    rows, cols = _cell_samples(labels.shape, square)
    inside = (rows >= 0) & (cols >= 0)
    sampled = np.where(inside, labels[rows.clip(0), cols.clip(0)], 0).astype(np.int64)  # (576, S^2)
    counts = np.zeros((MAP_SIZE * MAP_SIZE, N_PART_CLASSES), np.int64)
    np.add.at(counts, (np.repeat(np.arange(len(sampled)), sampled.shape[1]), sampled.reshape(-1)), 1)
    return counts.argmax(1).reshape(MAP_SIZE, MAP_SIZE)


def depth_cells(nearness: np.ndarray, square: tuple[float, float, float]) -> np.ndarray:
    """(24, 24) relative depth in [0, 1] of the crop: the mean nearness (inverse depth) of each cell's sample
    points with a value, min / max normalised over the cells that have one (1 = the nearest cell, 0 = the farthest
    cell and every cell outside the image or without a value)."""
    rows, cols = _cell_samples(nearness.shape, square)
    vals = np.where((rows >= 0) & (cols >= 0), nearness[rows.clip(0), cols.clip(0)], np.nan)
    inside = np.isfinite(vals)
    vals = np.where(inside, vals, 0.0)
    n_inside = inside.sum(1)
    mean = np.where(n_inside > 0, vals.sum(1) / np.maximum(n_inside, 1), np.nan)
    if not np.isfinite(mean).any():
        return np.zeros((MAP_SIZE, MAP_SIZE), np.float32)
    lo, hi = np.nanmin(mean), np.nanmax(mean)
    rel = (mean - lo) / (hi - lo) if hi > lo else np.where(np.isfinite(mean), 1.0, 0.0)
    return np.nan_to_num(rel, nan=0.0).clip(0, 1).reshape(MAP_SIZE, MAP_SIZE).astype(np.float32)


def near_foreground(nearness: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels nearer than Otsu's threshold on the frame's nearness (the signer in front of the scene)."""
    from skimage.filters import threshold_otsu

    finite = np.isfinite(nearness)
    if finite.sum() < 2 or np.ptp(nearness[finite]) == 0:
        return finite
    return finite & (nearness > threshold_otsu(nearness[finite]))


def depth_track(nearness: np.ndarray) -> tuple[np.ndarray, bool]:
    """One frame's (H, W) nearness (inverse depth: larger = nearer, any scale and shift; NaN = no value) -> the
    (24, 24) track cells and whether the frame is usable (False: no finite value; its cells are zeros)."""
    nearness = np.asarray(nearness, dtype=np.float64)
    if nearness.ndim != 2:
        raise ValueError(f"a depth map must be (H, W), got {nearness.shape}")
    square = foreground_square(near_foreground(nearness))
    if square is None:
        return np.zeros((MAP_SIZE, MAP_SIZE), np.float32), False
    return depth_cells(np.where(np.isfinite(nearness), nearness, np.nan), square), True
