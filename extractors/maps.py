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
