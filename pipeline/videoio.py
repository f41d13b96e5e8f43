"""The one video reader: every real extractor backend, Stage II's frame cache and the corpus preview decode
videos through `iter_frames` (OpenCV), so they agree on frame order, colour order (RGB) and what an unreadable
video is (`VideoError`, a ValueError: a recorded skip, never a traceback)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np


class VideoError(ValueError):
    """A video that cannot be opened or has no decodable frames."""


def iter_frames(
    path: str | os.PathLike, stride: int = 1, max_frames: int | None = None, size: int | None = None
) -> Iterator[np.ndarray]:
    """RGB uint8 frames (H, W, 3) of a video, in order: every `stride`-th frame, at most `max_frames` of them,
    resized to `size` x `size` (INTER_AREA, before the colour conversion: less to convert) when `size` is given.
    Skipped frames are only demuxed. Raises VideoError when the video is missing, cannot be opened or yields
    no frame at all."""
    path = Path(path)
    if not path.exists():
        raise VideoError(f"{path}: no such video")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise VideoError(f"{path}: cannot open video (corrupt or unsupported)")
    n, i = 0, 0
    try:
        while max_frames is None or n < max_frames:
            if i % stride:
                ok = cap.grab()
            else:
                ok, bgr = cap.read()
                if ok:
                    if size is not None:
                        bgr = cv2.resize(bgr, (size, size), interpolation=cv2.INTER_AREA)
                    n += 1
                    yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            if not ok:
                break
            i += 1
    finally:
        cap.release()
    if n == 0:
        raise VideoError(f"{path}: no decodable frames (empty or corrupt video)")


def read_frames(
    path: str | os.PathLike, stride: int = 1, max_frames: int | None = None, size: int | None = None
) -> np.ndarray:
    """`iter_frames` stacked: (T, H, W, 3) uint8 RGB."""
    return np.stack(list(iter_frames(path, stride, max_frames, size)))


# A video decoding to fewer than this share of the frames its container lists is truncated or damaged (a download
# cut short whose index came first): an estimated count (a container without one) is never off by this much.
MIN_DECODED_SHARE = 0.9


def probe_video(path: str | os.PathLike) -> tuple[int, float, int, int]:
    """(frames, fps, width, height) of a video, its frames counted by demuxing them (containers' frame counts are
    estimates). VideoError as `iter_frames` raises it, and for a video that decodes to far fewer frames than its
    container lists (`MIN_DECODED_SHARE`); fps 0.0 when the video states none."""
    path = Path(path)
    if not path.exists():
        raise VideoError(f"{path}: no such video")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoError(f"{path}: cannot open video (corrupt or unsupported)")
        ok, frame = cap.read()
        if not ok:
            raise VideoError(f"{path}: no decodable frames (empty or corrupt video)")
        n = 1
        while cap.grab():
            n += 1
        listed = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        if 0 < listed < 2**31 and n < MIN_DECODED_SHARE * listed:
            said = f"{n} of the {int(listed)} frames its container lists decode"
            raise VideoError(f"{path}: truncated or damaged: {said}")
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        return n, fps if fps > 0 else 0.0, frame.shape[1], frame.shape[0]
    finally:
        cap.release()
