"""OpenCV renderer for the synthetic signer: camera framing, shaded body parts, face, clutter, lighting, mp4.

Every body part is drawn from the same geometry the sensors use (`skeleton.BODY_CAPSULES`, the head
ellipsoid and the 68 face landmarks), far to near (painter's algorithm), with cylindrical shading, then
the frame gets the signer's lighting (brightness, colour cast, vignette) and sensor noise.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from pipeline.corpus.motion import Signer
from pipeline.corpus.skeleton import BODY_CAPSULES, HEAD_RADII, PART, P, head_centre, project

_SHIFT = 4  # OpenCV sub-pixel drawing: coordinates carry 4 fractional bits
_ONE = 1 << _SHIFT
_SKIN_PARTS = {PART["Face_Neck"], PART["Left_Hand"], PART["Right_Hand"]}
_FOREARMS = {PART["Left_Lower_Arm"], PART["Right_Lower_Arm"]}
_TROUSERS = {
    PART["Lower_Clothing"],
    PART["Left_Upper_Leg"],
    PART["Right_Upper_Leg"],
    PART["Left_Lower_Leg"],
    PART["Right_Lower_Leg"],
}
_VISIBLE_HEIGHT_M = 0.95  # hips to above the head: the usual sign-language framing, at zoom 1
_CAMERA_DISTANCE_M = 2.4


def make_camera(signer: Signer, width: int, height: int, n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """(T, 7) per-frame camera (`skeleton.CAMERA_DIMS`): a tripod framing the signer from hips to above the head."""
    h = signer.shape.height
    visible = _VISIBLE_HEIGHT_M * h / signer.zoom
    f = height * _CAMERA_DISTANCE_M / visible
    jitter = rng.normal(0, 0.015, 2)  # the tripod is never put back in exactly the same place
    cam_x = (signer.offset[0] + jitter[0]) * visible * width / height
    cam_y = 1.33 * h + (signer.offset[1] + jitter[1]) * visible
    cam = np.array([f, f, width / 2, height / 2, cam_x, cam_y, _CAMERA_DISTANCE_M])
    return np.repeat(cam[None], n_frames, 0)


def make_background(signer: Signer, width: int, height: int, clutter: int, rng: np.random.Generator) -> np.ndarray:
    """A defocused room behind the signer: a wall gradient and `clutter` shelves, frames, lamps and posts."""
    base = np.array(signer.background, dtype=np.float32)
    ramp = np.linspace(1.05, 0.8, height, dtype=np.float32)[:, None, None]
    img = np.clip(base[None, None] * ramp * np.ones((1, width, 1), np.float32), 0, 255).astype(np.uint8)
    for _ in range(clutter):
        colour = tuple(int(c) for c in np.clip(base * rng.uniform(0.4, 1.3, 3), 0, 255))
        kind = rng.integers(4)
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = int(rng.integers(width // 12, width // 3)), int(rng.integers(height // 12, height // 3))
        if kind == 0:  # picture frame / poster
            cv2.rectangle(img, (x, y), (x + w, y + h), colour, -1)
            cv2.rectangle(img, (x, y), (x + w, y + h), tuple(int(c * 0.6) for c in colour), max(1, width // 100))
        elif kind == 1:  # shelf with objects
            cv2.rectangle(img, (x, y), (x + w, y + max(2, h // 8)), colour, -1)
            for _ in range(int(rng.integers(1, 4))):
                bx = x + int(rng.integers(0, max(1, w)))
                cv2.rectangle(
                    img, (bx, y - h // 3), (bx + w // 6 + 1, y), tuple(int(c) for c in rng.integers(0, 255, 3)), -1
                )
        elif kind == 2:  # lamp / clock
            cv2.circle(img, (x, y), max(2, w // 3), colour, -1)
        else:  # door frame / post
            cv2.rectangle(img, (x, 0), (x + max(2, w // 5), height), colour, -1)
    return cv2.GaussianBlur(img, (0, 0), sigmaX=max(0.8, width / 160))


def _shade(colour: np.ndarray, k: float) -> tuple[int, int, int]:
    return tuple(int(c) for c in np.clip(colour * k, 0, 255))


_LIGHT_DIR = np.array([-1.0, -1.0]) / np.sqrt(2.0)  # light from the upper left (image coordinates)


def _capsules(img: np.ndarray, a: np.ndarray, b: np.ndarray, r: np.ndarray, shades: list[tuple]) -> None:
    """Shaded cylinders with round caps from pixel `a[i]` to `b[i]`, radius `r[i]` pixels, drawn in order.

    Each is three strokes: a dark silhouette, the lit body shifted toward the light, and a highlight.
    """
    d = b - a
    n = np.stack([-d[:, 1], d[:, 0]], 1) / (np.linalg.norm(d, axis=1, keepdims=True) + 1e-9)
    n *= np.sign(n @ _LIGHT_DIR + 1e-9)[:, None]
    o = n * (0.25 * r)[:, None]
    ends = (np.stack([a, b, a + o, b + o, a + 2 * o, b + 2 * o], 1) * _ONE).astype(np.int32).tolist()
    widths = np.stack([2 * r, 1.2 * r, 0.4 * r], 1).round().clip(1, None).astype(int).tolist()
    for (pa, pb, qa, qb, ha, hb), (w0, w1, w2), big, (dark, lit, high) in zip(ends, widths, (r > 1.2).tolist(), shades):
        cv2.line(img, pa, pb, dark, w0, cv2.LINE_AA, _SHIFT)
        if big:
            cv2.line(img, qa, qb, lit, w1, cv2.LINE_AA, _SHIFT)
            cv2.line(img, ha, hb, high, w2, cv2.LINE_AA, _SHIFT)


def _poly(img: np.ndarray, pts: np.ndarray, colour: tuple, closed: bool, thickness: int = -1) -> None:
    p = (pts * _ONE).astype(np.int32).reshape(-1, 1, 2)
    if thickness < 0:
        cv2.fillPoly(img, [p], colour, cv2.LINE_AA, _SHIFT)
    else:
        cv2.polylines(img, [p], closed, colour, thickness, cv2.LINE_AA, _SHIFT)


def _ellipse(img: np.ndarray, centre: np.ndarray, axes: tuple[float, float], angle: float, colour: tuple) -> None:
    """A filled, anti-aliased ellipse at sub-pixel `centre` with semi-axes `axes` (pixels)."""
    c = tuple(int(v) for v in centre * _ONE)
    size = tuple(max(1, int(a * _ONE)) for a in axes)
    cv2.ellipse(img, c, size, angle, 0, 360, colour, -1, cv2.LINE_AA, _SHIFT)


def _head(
    img: np.ndarray,
    uv: np.ndarray,
    centre: np.ndarray,
    px_per_m: float,
    signer: Signer,
    jaw_open: float,
    light: np.ndarray,
) -> None:
    """The head: ears, hair, face oval, and brows, eyes, nose and lips from the 68 face landmarks."""
    skin, hair = np.array(signer.skin, np.float32) * light, np.array(signer.hair, np.float32) * light
    hs = signer.shape.height * signer.shape.head_size
    ax = (HEAD_RADII[0] * hs * px_per_m, HEAD_RADII[1] * hs * px_per_m)
    ear_vec = uv[P["left_ear"]] - uv[P["right_ear"]]
    angle = float(np.degrees(np.arctan2(ear_vec[1], ear_vec[0])))
    up = np.array([np.sin(np.radians(angle)), -np.cos(np.radians(angle))])  # head's up direction in the image
    for ear in ("left_ear", "right_ear"):
        _ellipse(img, uv[P[ear]], (ax[0] * 0.18, ax[1] * 0.3), angle, _shade(skin, 0.85))
    _ellipse(img, centre + 0.1 * ax[1] * up, (ax[0] * 1.04, ax[1] * 0.95), angle, _shade(hair, 1.0))  # hair
    _ellipse(img, centre - 0.08 * ax[1] * up, (ax[0] * 0.92, ax[1] * 0.84), angle, _shade(skin, 0.95))  # face
    lw = max(1, int(round(px_per_m * 0.004)))
    face = uv[P["face_0"] : P["face_0"] + 68]
    dark = _shade(hair, 0.8)
    _poly(img, face[17:22], dark, False, lw)
    _poly(img, face[22:27], dark, False, lw)
    for eye in (face[36:42], face[42:48]):
        _poly(img, eye, (235, 235, 235), True)
        cv2.circle(
            img,
            tuple(int(v) for v in eye.mean(0) * _ONE),
            max(1, int(px_per_m * 0.005 * _ONE)),
            (40, 30, 30),
            -1,
            cv2.LINE_AA,
            _SHIFT,
        )
    _poly(img, face[27:31], _shade(skin, 0.7), False, lw)
    _poly(img, face[31:36], _shade(skin, 0.7), False, lw)
    _poly(img, face[48:60], _shade(np.array([90, 90, 185], np.float32) * light, skin.mean() / 160), True)
    if jaw_open > 0.05:
        _poly(img, face[60:68], (30, 20, 40), True)


def render_frames(
    points: np.ndarray, camera: np.ndarray, jaw_open: np.ndarray, signer: Signer, background: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:  # fmt: skip
    """(T, 139, 3) world points -> (T, H, W, 3) uint8 BGR frames."""
    T = points.shape[0]
    H, W = background.shape[:2]
    uv, depth = project(points, camera)
    centres = head_centre(points, signer.shape)
    c_uv, c_depth = project(centres[:, None], camera)
    light = signer.brightness * np.array(signer.tint, np.float32)  # the signer's lighting: brightness, colour cast
    skin = np.array(signer.skin, np.float32) * light
    shirt = np.array(signer.shirt, np.float32) * light
    trousers = shirt * 0.45 + 25
    colours = []
    for cap in BODY_CAPSULES:
        if cap.part in _SKIN_PARTS:
            colours.append(skin)
        elif cap.part in _FOREARMS:
            colours.append(shirt if signer.long_sleeves else skin)
        elif cap.part in _TROUSERS:
            colours.append(trousers)
        elif cap.part in (PART["Left_Shoe"], PART["Right_Shoe"]):
            colours.append(np.array([30, 30, 30], np.float32))
        else:
            colours.append(shirt)
    torso = np.array([cap.part in (PART["Upper_Clothing"], PART["Lower_Clothing"]) for cap in BODY_CAPSULES])
    cap_a = np.array([cap.a for cap in BODY_CAPSULES])
    cap_b = np.array([cap.b for cap in BODY_CAPSULES])
    radius_m = (
        np.array([0.5 * (cap.radius_a + cap.radius_b) for cap in BODY_CAPSULES])
        * signer.shape.height
        * signer.shape.girth
    )
    shades = [(_shade(c, 0.72), _shade(c, 1.0), _shade(c, 1.18)) for c in colours]
    cap_depth = 0.5 * (depth[:, cap_a] + depth[:, cap_b]) + 0.12 * torso  # torso sits behind what overlaps it
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    vignette = 1.0 - 0.5 * (((xx - W / 2) / W) ** 2 + ((yy - H / 2) / H) ** 2)
    backdrop = np.clip(background * vignette[..., None] * light, 0, 255).astype(np.uint8)
    frames = np.empty((T, H, W, 3), np.uint8)
    head_key = len(BODY_CAPSULES)
    for t in range(T):
        img = backdrop.copy()
        keys = np.append(cap_depth[t], c_depth[t, 0] - 0.02)
        order = np.argsort(-keys, kind="stable")  # far to near
        head_at = int(np.flatnonzero(order == head_key)[0])
        for chunk in (order[:head_at], None, order[head_at + 1 :]):
            if chunk is None:
                _head(img, uv[t], c_uv[t, 0], camera[t, 0] / c_depth[t, 0], signer, float(jaw_open[t]), light)
            elif len(chunk):
                r_px = radius_m[chunk] * camera[t, 0] / cap_depth[t, chunk]
                _capsules(img, uv[t, cap_a[chunk]], uv[t, cap_b[chunk]], r_px, [shades[i] for i in chunk])
        noise = rng.integers(-3, 4, img.shape, dtype=np.int16)  # sensor noise, sd 2 grey levels
        frames[t] = np.clip(cv2.add(img.astype(np.int16), noise), 0, 255)
    return frames


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float) -> None:
    """Write BGR frames as an MPEG-4 (mp4v) file, atomically: the file appears only once it is complete."""
    path = Path(path)
    tmp = path.with_name(path.stem + ".partial.mp4")
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot open an mp4v writer for {tmp} (is the OpenCV build missing FFmpeg?)")
    for frame in frames:
        writer.write(frame)
    writer.release()
    os.replace(tmp, path)
