"""What every track shares: its layout (dims and per-dim names) and what a backend returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.layout import TRACKS


@dataclass(frozen=True)
class TrackLayout:
    """A track's per-frame vector: one value per name in `dim_names` (Section 3.1); how many is
    `pipeline.layout.TRACKS`' business, checked here."""

    name: str
    dim_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.dim_names) != TRACKS[self.name]:
            raise ValueError(f"{self.name}: {len(self.dim_names)} names for {TRACKS[self.name]} dims")
        if len(set(self.dim_names)) != self.dims:
            raise ValueError(f"{self.name}: per-dim names are not unique")

    @property
    def dims(self) -> int:
        return len(self.dim_names)


@dataclass(frozen=True)
class TrackFrames:
    """One utterance of one track: `values` (T, dims) float32, and `mask` (T,) bool (frame detected)."""

    values: np.ndarray
    mask: np.ndarray

    def __post_init__(self) -> None:
        if self.values.ndim != 2 or self.mask.shape != (len(self.values),):
            raise ValueError(f"values {self.values.shape} and mask {self.mask.shape} do not align")
        if not np.isfinite(self.values).all():
            raise ValueError("track values contain NaN or infinite numbers")
        if np.any(self.values[~self.mask] != 0):
            raise ValueError("frames without a detection must be all zeros")


def keypoint_names(prefix: str, points: list[str] | tuple[str, ...], fields: str) -> list[str]:
    """`prefix.point.field` for every point and field, point-major (x, y, ... of point 0 first)."""
    return [f"{prefix}.{p}.{f}" for p in points for f in fields]


# The 21-point hand of OpenPose, DWPose (COCO-WholeBody) and MediaPipe: wrist, then 4 points per finger.
HAND21: tuple[str, ...] = (
    "wrist", "thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip",
    "index_mcp", "index_pip", "index_dip", "index_tip", "middle_mcp", "middle_pip", "middle_dip", "middle_tip",
    "ring_mcp", "ring_pip", "ring_dip", "ring_tip", "pinky_mcp", "pinky_pip", "pinky_dip", "pinky_tip",
)  # fmt: skip
