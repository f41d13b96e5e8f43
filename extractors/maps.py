"""The two 24 x 24 map tracks: PrimeDepth depth and Sapiens body-part labels (576 dims each, row-major)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from extractors.base import TrackFrames, TrackLayout
from pipeline.corpus.skeleton import GOLIATH_CLASSES, PART

if TYPE_CHECKING:  # simulation imports this module (MAP_SIZE)
    from extractors.simulation import GroundTruth

MAP_SIZE = 24


def _grid_names(prefix: str) -> tuple[str, ...]:
    return tuple(f"{prefix}.r{r:02d}c{c:02d}" for r in range(MAP_SIZE) for c in range(MAP_SIZE))


DEPTH_LAYOUT = TrackLayout("primedepth", MAP_SIZE * MAP_SIZE, _grid_names("primedepth"))
PARTS_LAYOUT = TrackLayout("sapiens", MAP_SIZE * MAP_SIZE, _grid_names("sapiens"))
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


def simulate_depth(gt: GroundTruth, rng: np.random.Generator, noise: float = 1.0) -> TrackFrames:
    """PrimeDepth as a sensor on the synthetic corpus: relative (per-frame normalised) depth of the signer crop.

    Noise and failure model: like monocular depth, only relative depth survives: the nearest body point is 1, the
    farthest 0.2, the background 0; edges are blurred (3 x 3 box) and every cell gets sd 0.02 noise.
    """
    depth, _ = gt.raster()
    body = np.isfinite(depth)
    d = np.where(body, depth, np.nan)
    near = np.nanmin(d.reshape(len(d), -1), axis=1)[:, None, None]
    far = np.nanmax(d.reshape(len(d), -1), axis=1)[:, None, None]
    rel = np.where(body, 0.2 + 0.8 * (far - np.nan_to_num(d)) / np.maximum(far - near, 1e-6), 0.0)
    if noise > 0:
        rel = np.stack([cv2.blur(m.astype(np.float32), (3, 3)) for m in rel])
    rel = np.clip(rel + rng.normal(0, 1, rel.shape) * (0.02 * noise), 0, 1)
    return TrackFrames(depth_to_vector(rel), np.ones(len(rel), dtype=bool))


def simulate_parts(gt: GroundTruth, rng: np.random.Generator, noise: float = 1.0) -> TrackFrames:
    """Sapiens segmentation as a sensor on the synthetic corpus: body-part labels of the signer crop.

    Noise and failure model: boundary cells take a neighbour's label with probability 0.25 (coarse masks), and in
    2 % of frames the left and right hands / forearms are swapped (left-right confusion).
    """
    _, labels = gt.raster()
    lab = labels.astype(np.int64)
    padded = np.pad(lab, ((0, 0), (1, 1), (1, 1)), mode="edge")
    shifts = [padded[:, 1:-1, :-2], padded[:, 1:-1, 2:], padded[:, :-2, 1:-1], padded[:, 2:, 1:-1]]
    pick = rng.integers(0, 4, lab.shape)
    neighbour = np.choose(pick, shifts)
    lab = np.where((neighbour != lab) & (rng.random(lab.shape) < min(1.0, 0.25 * noise)), neighbour, lab)
    swap = rng.random(len(lab)) < 0.02 * noise
    for a, b in (("Left_Hand", "Right_Hand"), ("Left_Lower_Arm", "Right_Lower_Arm")):
        ia, ib = PART[a], PART[b]
        sl = lab[swap]
        lab[swap] = np.where(sl == ia, ib, np.where(sl == ib, ia, sl))
    return TrackFrames(parts_to_vector(lab), np.ones(len(lab), dtype=bool))
