"""The real MediaPipe backend: MediaPipe Holistic (legacy solution), model complexity 1, tracking across frames.

Its weights ship inside the mediapipe 0.10.14 wheel, so nothing is downloaded. One Holistic graph per video: its
tracking state must not leak from one utterance into the next.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from extractors.base import TrackFrames
from extractors.mediapipe import to_vector
from extractors.registry import Backend, register, sha256_files
from pipeline.videoio import iter_frames

# the graphs Holistic runs at model complexity 1 (pose detection and landmarks, hand re-crop and landmarks)
_WEIGHT_FILES = (
    "pose_detection/pose_detection.tflite",
    "pose_landmark/pose_landmark_full.tflite",
    "hand_landmark/hand_landmark_full.tflite",
    "holistic_landmark/hand_recrop.tflite",
)


@register("mediapipe", "holistic")
class HolisticBackend(Backend):
    """Runs Holistic over RGB frames and writes the 258-dim MediaPipe track."""

    options = {"model_complexity": 1, "min_detection_confidence": 0.5, "min_tracking_confidence": 0.5}

    def __init__(self, options: dict | None = None, corpus_dir: str | os.PathLike = ".", seed: int = 0) -> None:
        super().__init__(options or {}, Path(corpus_dir), seed)
        opts = {**self.options, **(options or {})}
        self.settings = dict(
            static_image_mode=False,
            model_complexity=int(opts["model_complexity"]),
            smooth_landmarks=True,
            min_detection_confidence=float(opts["min_detection_confidence"]),
            min_tracking_confidence=float(opts["min_tracking_confidence"]),
        )

    def extract(self, row: dict, index: int) -> TrackFrames:
        return self.extract_video(self.corpus_dir / row["video"])

    def extract_frames(self, frames_rgb: Iterable[np.ndarray]) -> TrackFrames:
        """Frames (H, W, 3) uint8 RGB, in order -> one utterance of the track."""
        import mediapipe as mp

        values, mask = [], []
        with mp.solutions.holistic.Holistic(**self.settings) as holistic:
            for frame in frames_rgb:
                res = holistic.process(np.ascontiguousarray(frame))
                if res.pose_landmarks is None:
                    values.append(np.zeros(258, np.float32))
                    mask.append(False)
                    continue
                pose = np.array([[p.x, p.y, p.z, p.visibility] for p in res.pose_landmarks.landmark])
                hands = [
                    None if h is None else np.array([[p.x, p.y, p.z] for p in h.landmark])
                    for h in (res.left_hand_landmarks, res.right_hand_landmarks)
                ]
                values.append(to_vector(pose, *hands))
                mask.append(True)
        if not values:
            raise ValueError("no frames")
        return TrackFrames(np.stack(values).astype(np.float32), np.array(mask))

    def extract_video(self, path: str | os.PathLike) -> TrackFrames:
        """Decode a video file (`pipeline.videoio`) and extract every frame; VideoError when it has none."""
        return self.extract_frames(iter_frames(path))

    def version(self) -> str:
        import mediapipe

        return f"mediapipe {mediapipe.__version__} holistic model_complexity={self.settings['model_complexity']}"

    def weights_hash(self) -> str | None:
        import mediapipe

        modules = Path(mediapipe.__file__).parent / "modules"
        return sha256_files([modules / f for f in _WEIGHT_FILES])
