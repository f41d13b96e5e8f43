"""The per-frame pose vector: which tracks it holds, in what order, and where each sits (Section 3.1, Fig. 2).

This module is the one definition of the layout. `fuse` writes it into the fused store's attributes
(`FusedLayout.to_attrs`); everything downstream reads it back from there (`FusedLayout.from_attrs`) or from a
checkpoint's config, never from a copy. It imports nothing heavy, so any module may use it.

Throughout the code the per-frame vector is called the *features* of a frame: `(T, 1959)` for an utterance,
`(B, T, 1959)` for a batch, with a track mask `(T, 5)` / `(B, T, 5)` saying which tracks are real.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

# Track name -> dims per frame, in the fused order (Section 3.1); extractors/<track>.py names every dim.
TRACKS: dict[str, int] = {
    "smplerx": 165,  # SMPL-X full pose, 55 joints x axis-angle
    "dwpose": 384,  # 128 whole-body keypoints x (x, y, score)
    "mediapipe": 258,  # 33 pose x (x, y, z, visibility) + 2 hands x 21 x (x, y, z)
    "primedepth": 576,  # 24 x 24 relative depth map
    "sapiens": 576,  # 24 x 24 body-part label map
}
TRACK_ORDER: tuple[str, ...] = tuple(TRACKS)


@dataclass(frozen=True)
class FusedLayout:
    """Tracks concatenated in order: `tracks[i]` occupies `dims[i]` consecutive values of the features."""

    tracks: tuple[str, ...]
    dims: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.tracks) != len(self.dims) or len(set(self.tracks)) != len(self.tracks):
            raise ValueError(f"a layout needs one dims entry per distinct track, got {self.tracks} / {self.dims}")

    @property
    def width(self) -> int:
        """Values per frame (1959 for the paper's five tracks)."""
        return sum(self.dims)

    @property
    def slices(self) -> dict[str, tuple[int, int]]:
        """Where each track sits in the features: {track: (start, stop)}."""
        out, start = {}, 0
        for t, d in zip(self.tracks, self.dims):
            out[t] = (start, start + d)
            start += d
        return out

    def index(self, track: str) -> int:
        """The track's column in a track mask."""
        if track not in self.tracks:
            raise ValueError(f"unknown track {track!r}; tracks are {list(self.tracks)}")
        return self.tracks.index(track)

    def use(self, tracks: tuple[str, ...] | list[str] | None) -> np.ndarray:
        """(n_tracks,) bool: which tracks a model reads (None: all of them); unknown names are errors."""
        if tracks is not None and (unknown := sorted(set(tracks) - set(self.tracks))):
            raise ValueError(f"unknown tracks {unknown}; tracks are {list(self.tracks)}")
        return np.array([tracks is None or t in tracks for t in self.tracks])

    def expand_mask(self, track_mask: np.ndarray) -> np.ndarray:
        """A track mask (..., n_tracks) -> a value mask (..., width): each track's bit repeated over its dims."""
        return np.repeat(track_mask, self.dims, axis=-1)

    def to_attrs(self) -> dict:
        """What `fuse` writes into the fused store's attributes."""
        return {"tracks": list(self.tracks), "dims": self.width, "slices": {t: list(s) for t, s in self.slices.items()}}

    @classmethod
    def from_attrs(cls, attrs: Mapping, where: str = "the feature store") -> FusedLayout:
        """The layout a fused store was written with; a store without one (or an inconsistent one) is an error."""
        try:
            tracks = tuple(attrs["tracks"])
            dims = tuple(int(attrs["slices"][t][1]) - int(attrs["slices"][t][0]) for t in tracks)
        except (KeyError, TypeError, IndexError) as err:
            raise ValueError(f"{where}: no fused-layout attributes (tracks, slices): rebuild it with `fuse`") from err
        layout = cls(tracks, dims)
        if int(attrs.get("dims", -1)) != layout.width:
            raise ValueError(f"{where}: {attrs.get('dims')} dims per frame, its track slices add up to {layout.width}")
        return layout


FUSED = FusedLayout(TRACK_ORDER, tuple(TRACKS.values()))
