"""Utterance clips of a real corpus: a span of a source video, cut by frames or by seconds, into the corpus folder.

A source video's own frame rate is the time base: a span in seconds (SignStream, a CSV's start / end) becomes the
frames `round(start * fps)` to `round(end * fps)` (end exclusive) of that video; a span in frames (WLASL) is taken
as it is. A span reaching outside the video is an error (its times belong to another video or another frame rate),
never silently clipped; so is a span in seconds of a video whose frames up to the span's end are not where its frame
rate puts them (more than half a frame off: a variable frame rate), where frame numbers are not times. A clip
spanning the whole video is the video file itself, copied (no re-encoding); a cut clip is re-encoded frame by frame
(OpenCV, MPEG-4 Part 2 as the synthetic corpus writes), at the source's frame rate and size.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2

from pipeline.videoio import VideoError, probe_video


class MissingVideoError(VideoError):
    """The video an entry names is not there."""


class SpanError(ValueError):
    """A clip's span reaches outside its video, or is empty."""


class VariableFrameRateError(VideoError):
    """A span in seconds of a video whose frames are not evenly spaced in time: its frame numbers are not its times."""


@dataclass(frozen=True)
class Span:
    """Where an utterance lies in its video: frames [start, end) (`unit` "frame") or seconds (`unit` "second");
    `end` None: to the end of the video."""

    start: float = 0.0
    end: float | None = None
    unit: str = "frame"

    @property
    def whole(self) -> bool:
        return self.start == 0 and self.end is None


@dataclass(frozen=True)
class ClipInfo:
    n_frames: int
    fps: float
    width: int
    height: int


def frame_range(span: Span, fps: float) -> tuple[int, int | None]:
    """The clip's frames [first, stop) in its video (stop None: to the end)."""
    if span.unit == "second":
        first = round(span.start * fps)
        return first, None if span.end is None else round(span.end * fps)
    return int(span.start), None if span.end is None else int(span.end)


def cut_clip(src: Path, dst: Path, span: Span) -> ClipInfo:
    """Write the clip `span` of `src` to `dst` (atomically) and return what it holds. MissingVideoError or
    VideoError (ValueErrors) for a video that is not there or cannot be read; SpanError for a span outside it."""
    cap = cv2.VideoCapture(str(src))
    try:
        if not src.is_file():
            raise MissingVideoError(f"{src}: no such video")
        if not cap.isOpened():
            raise VideoError(f"{src}: cannot open video (corrupt or unsupported)")
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        if not math.isfinite(fps) or fps <= 0:
            raise VideoError(f"{src}: the video states no frame rate")
        first, stop = frame_range(span, fps)
        if first < 0 or (stop is not None and stop <= first):
            raise SpanError(f"{src}: the span {_said(span)} is empty or negative")
        tmp = dst.with_name(f"{dst.stem}.partial{dst.suffix}")  # the writer picks its container by the suffix
        try:
            if span.whole:
                info = _copy(src, tmp, fps)
            else:
                info = _cut(cap, tmp, fps, first, stop, src if span.unit == "second" else None)
            _check_span(src, span, first, stop, info)
            os.replace(tmp, dst)
        finally:
            tmp.unlink(missing_ok=True)
        return info
    finally:
        cap.release()


def _copy(src: Path, tmp: Path, fps: float) -> ClipInfo:
    """The whole video: copied as it is, its frames counted by demuxing."""
    n, _, width, height = probe_video(src)
    shutil.copyfile(src, tmp)
    return ClipInfo(n, fps, width, height)


def _cut(cap: cv2.VideoCapture, tmp: Path, fps: float, first: int, stop: int | None, timed: Path | None) -> ClipInfo:
    """Frames [first, stop) decoded in order (seeking is not frame-accurate in every container) and re-encoded.
    `timed` (the source, for a span in seconds): each frame up to `stop` must be where `fps` puts it in time."""
    writer, n, i, size = None, 0, 0, (0, 0)
    try:
        while stop is None or i < stop:
            if i < first:
                ok, frame = cap.grab(), None
            else:
                ok, frame = cap.read()
            if not ok:
                break
            if timed is not None:
                timed = _check_time(cap, timed, i, fps)
            if frame is not None:
                if writer is None:
                    size = (frame.shape[1], frame.shape[0])
                    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size, True)
                    if not writer.isOpened():
                        raise OSError(f"{tmp}: OpenCV cannot write an MPEG-4 video here")
                writer.write(frame if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
                n += 1
            i += 1
    finally:
        if writer is not None:
            writer.release()
    return ClipInfo(n, fps, *size) if n else ClipInfo(0, fps, 0, 0)


def _check_time(cap: cv2.VideoCapture, src: Path, i: int, fps: float) -> Path | None:
    """Refuse frame i (just decoded) more than half a frame from i / fps: the frame rate varies, so the span's
    seconds are not its frame numbers. Returns `src`, or None when the video has no timestamps to check (every
    frame past the first at 0 s): nothing more to check then."""
    t = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
    if i > 0 and t == 0:
        return None
    if abs(t - i / fps) > 0.5 / fps:
        raise VariableFrameRateError(
            f"{src}: frame {i} is at {t:.3f} s, not at {i / fps:.3f} s as at its {fps:g} fps: its frame rate varies, "
            "so a span in seconds is not a span of its frames; re-encode it at a constant frame rate "
            "(ffmpeg -i IN -fps_mode cfr OUT)"
        )
    return src


def _check_span(src: Path, span: Span, first: int, stop: int | None, info: ClipInfo) -> None:
    """The clip holds every frame the span asks for, or the span reaches outside the video."""
    where = f"{src}: the span {_said(span)} (frames {first} to {'the end' if stop is None else stop})"
    if info.n_frames == 0:
        raise SpanError(f"{where} is outside the video, which ends before frame {first} at {info.fps:g} fps")
    if stop is not None and info.n_frames < stop - first:
        raise SpanError(f"{where} is outside the video, which has {first + info.n_frames} frames at {info.fps:g} fps")


def _said(span: Span) -> str:
    end = "end" if span.end is None else f"{span.end:g}"
    return f"{span.start:g}-{end} {span.unit}s"
