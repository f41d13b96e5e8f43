"""Pose extractors: one module per track (its per-dim names and `to_vector`) and, under `extractors.backends`, the
backends that produce it, registered with `extractors.registry.register`.

The track order and dims are `pipeline.layout`'s; this package adds what each dim means. Importing it is light:
no backend (and so neither the synthetic signer nor any model runtime) is imported until one is looked up.
"""

from __future__ import annotations

from extractors import dwpose, mediapipe, primedepth, sapiens, smplerx
from extractors.base import TrackLayout
from pipeline.layout import TRACK_ORDER

LAYOUTS: dict[str, TrackLayout] = {m.LAYOUT.name: m.LAYOUT for m in (smplerx, dwpose, mediapipe, primedepth, sapiens)}
if tuple(sorted(LAYOUTS)) != tuple(sorted(TRACK_ORDER)):
    raise ImportError(f"extractors name tracks {sorted(LAYOUTS)}, pipeline.layout has {sorted(TRACK_ORDER)}")

__all__ = ["LAYOUTS", "TRACK_ORDER", "TrackLayout"]
