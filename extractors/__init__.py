"""Pose extractors: one module per track, each with its layout, `to_vector` and backends.

The five tracks concatenate, in `TRACK_ORDER`, into the 1959-dim per-frame representation (Section 3.1).
"""

from __future__ import annotations

from extractors import dwpose, mediapipe, primedepth, sapiens, smplerx
from extractors.base import TrackLayout

TRACK_ORDER: tuple[str, ...] = ("smplerx", "dwpose", "mediapipe", "primedepth", "sapiens")
LAYOUTS: dict[str, TrackLayout] = {m.LAYOUT.name: m.LAYOUT for m in (smplerx, dwpose, mediapipe, primedepth, sapiens)}
FUSED_DIMS = sum(LAYOUTS[t].dims for t in TRACK_ORDER)


def fused_slices() -> dict[str, tuple[int, int]]:
    """Where each track sits in the fused 1959-dim vector."""
    out, start = {}, 0
    for t in TRACK_ORDER:
        out[t] = (start, start + LAYOUTS[t].dims)
        start += LAYOUTS[t].dims
    return out
