"""Shared machinery of the `simulated` backends: the ground truth as a sensor sees it, and sensor noise.

Each simulated backend reads the synthetic corpus' ground truth (`data/corpus/skeleton.zarr`), views it through
the same camera that rendered the video, and applies its own noise and failure model (documented in `simulated.py`).
Nothing here looks at the glosses: a sensor knows only what is in front of the camera.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from extractors.maps import MAP_SIZE
from pipeline.corpus.motion import Signer
from pipeline.corpus.skeleton import BODY_CAPSULES, HEAD_RADII, PART, P, head_centre, project
from pipeline.corpus.synthetic import SKELETON_LAYOUT


@dataclass
class GroundTruth:
    """One utterance's ground truth: SMPL-X pose, world points and the camera, for signer `signer`."""

    values: np.ndarray  # (T, 593) skeleton-store frames
    signer: Signer
    width: int
    height: int

    def _slice(self, name: str) -> np.ndarray:
        a, b = SKELETON_LAYOUT[name]
        return self.values[:, a:b].astype(np.float64)

    @property
    def n_frames(self) -> int:
        return len(self.values)

    @cached_property
    def pose(self) -> np.ndarray:  # (T, 55, 3)
        return self._slice("pose").reshape(self.n_frames, 55, 3)

    @cached_property
    def points(self) -> np.ndarray:  # (T, 139, 3) world metres
        return self._slice("points").reshape(self.n_frames, -1, 3)

    @cached_property
    def camera(self) -> np.ndarray:  # (T, 7)
        return self._slice("camera")

    @cached_property
    def uv_depth(self) -> tuple[np.ndarray, np.ndarray]:  # (T, 139, 2) pixels, (T, 139) metres
        return project(self.points, self.camera)

    def pixel(self, names: list | tuple) -> np.ndarray:
        """(T, len(names), 2) pixel positions; an entry may be a tuple of point names (their mean)."""
        uv = self.uv_depth[0]
        return np.stack([uv[:, [P[n] for n in (k if isinstance(k, tuple) else (k,))]].mean(1) for k in names], 1)

    def world(self, names: list | tuple) -> np.ndarray:
        """(T, len(names), 3) world positions, same naming as `pixel`."""
        return np.stack(
            [self.points[:, [P[n] for n in (k if isinstance(k, tuple) else (k,))]].mean(1) for k in names], 1
        )

    def speed_px(self, name: str) -> np.ndarray:
        """(T,) image speed of a point in pixels per frame (motion blur grows with it)."""
        uv = self.uv_depth[0][:, P[name]]
        v = np.linalg.norm(np.diff(uv, axis=0), axis=1)
        return np.concatenate([v[:1], v]) if len(v) else np.zeros(self.n_frames)

    def in_frame(self, uv: np.ndarray, margin: float = 0.0) -> np.ndarray:
        return (
            (uv[..., 0] >= -margin)
            & (uv[..., 0] < self.width + margin)
            & (uv[..., 1] >= -margin)
            & (uv[..., 1] < self.height + margin)
        )

    # --- dense maps: depth and part labels over the signer crop ---------------------------------------------
    def crop_boxes(self) -> np.ndarray:
        """(T, 4) square signer crops (x0, y0, side, side) in pixels: head to hips and both hands, plus margin."""
        names = ["head", "left_hip", "right_hip", "left_wrist", "right_wrist", "left_shoulder", "right_shoulder"]
        names += ["left_middle_tip", "right_middle_tip", "left_elbow", "right_elbow"]
        uv = self.pixel(names)
        lo, hi = uv.min(1), uv.max(1)
        centre = 0.5 * (lo + hi)
        side = 1.25 * np.max(hi - lo, axis=1) + 0.1 * self.height
        return np.stack([centre[:, 0] - side / 2, centre[:, 1] - side / 2, side, side], 1)

    def raster(self) -> tuple[np.ndarray, np.ndarray]:
        """Ray-cast the body geometry at MAP_SIZE x MAP_SIZE over each frame's crop.

        Returns:
            depth: (T, S, S) camera distance in metres (inf = background); part: (T, S, S) Goliath class ids.
        """
        T, S = self.n_frames, MAP_SIZE
        box = self.crop_boxes()
        g = (np.arange(S) + 0.5) / S
        px = box[:, None, None, 0] + g[None, None, :] * box[:, None, None, 2]  # (T, 1, S) columns
        py = box[:, None, None, 1] + g[None, :, None] * box[:, None, None, 3]  # (T, S, 1) rows
        pix = np.stack(np.broadcast_arrays(px, py), -1).reshape(T, S * S, 2)  # (T, S*S, 2)
        uv, depth = self.uv_depth
        f = self.camera[:, 0]
        scale = self.signer.shape.height * self.signer.shape.girth
        best = np.full((T, S * S), np.inf)
        part = np.zeros((T, S * S), dtype=np.int16)
        # x and y apart: numpy's reductions over a length-2 last axis are slow, and x0 * y0 + x1 * y1 is the same
        # IEEE arithmetic in the same order as the reductions did it (so the maps are bit-identical to before)
        px, py = pix[..., 0], pix[..., 1]  # (T, S*S)
        for cap in BODY_CAPSULES:
            ax, ay = uv[:, cap.a, 0][:, None], uv[:, cap.a, 1][:, None]  # (T, 1)
            abx, aby = uv[:, cap.b, 0][:, None] - ax, uv[:, cap.b, 1][:, None] - ay
            za, zb = depth[:, cap.a], depth[:, cap.b]
            s = np.clip(((px - ax) * abx + (py - ay) * aby) / ((abx**2 + aby**2) + 1e-9), 0, 1)
            dx, dy = px - (ax + s * abx), py - (ay + s * aby)
            dist = np.sqrt(dx * dx + dy * dy)
            z = za[:, None] + s * (zb - za)[:, None]
            r_m = (cap.radius_a + s * (cap.radius_b - cap.radius_a)) * scale
            r_px = r_m * f[:, None] / z
            inside = dist < r_px
            surface = z - r_m * np.sqrt(np.clip(1 - (dist / np.maximum(r_px, 1e-9)) ** 2, 0, 1))
            hit = inside & (surface < best)
            best = np.where(hit, surface, best)
            part = np.where(hit, cap.part, part)
        # the head: an ellipsoid; its top is hair, the rest face
        hs = self.signer.shape.height * self.signer.shape.head_size
        c_uv, c_z = project(head_centre(self.points, self.signer.shape)[:, None], self.camera)
        ax = HEAD_RADII[0] * hs * f / c_z[:, 0]
        ay = HEAD_RADII[1] * hs * f / c_z[:, 0]
        dx = (pix[..., 0] - c_uv[:, 0, 0][:, None]) / ax[:, None]
        dy = (pix[..., 1] - c_uv[:, 0, 1][:, None]) / ay[:, None]
        rho = dx**2 + dy**2
        surface = c_z[:, 0][:, None] - HEAD_RADII[2] * hs * np.sqrt(np.clip(1 - rho, 0, 1))
        hit = (rho < 1) & (surface < best)
        best = np.where(hit, surface, best)
        part = np.where(hit, np.where(dy < -0.45, PART["Hair"], PART["Face_Neck"]), part)
        return best.reshape(T, S, S), part.reshape(T, S, S)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sd: float, rho: float = 0.7) -> np.ndarray:
    """Temporally correlated Gaussian noise along axis 0 (AR(1) with coefficient `rho`, marginal sd `sd`)."""
    e = rng.normal(0.0, sd * np.sqrt(1 - rho**2), shape)
    out = np.empty(shape)
    out[0] = rng.normal(0.0, sd, shape[1:])
    for t in range(1, shape[0]):
        out[t] = rho * out[t - 1] + e[t]
    return out


def dropouts(rng: np.random.Generator, p_start: np.ndarray, mean_len: float) -> np.ndarray:
    """(T,) bool runs of failure: each frame starts a run with probability `p_start[t]`, runs last ~`mean_len`."""
    T = len(p_start)
    lost = np.zeros(T, dtype=bool)
    t = 0
    while t < T:
        if rng.random() < p_start[t]:
            n = max(1, int(rng.geometric(1.0 / max(mean_len, 1.0))))
            lost[t : t + n] = True
            t += n
        else:
            t += 1
    return lost
