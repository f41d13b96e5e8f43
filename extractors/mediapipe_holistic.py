"""The real MediaPipe backend: MediaPipe Holistic (legacy solution), model complexity 1, tracking across frames.

Its weights ship inside the mediapipe 0.10.14 wheel, so nothing is downloaded. One Holistic graph per video: its
tracking state must not leak from one utterance into the next.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import cv2
import numpy as np

from extractors.base import TrackFrames
from extractors.mediapipe import to_vector


class HolisticBackend:
    """Runs Holistic over RGB frames and writes the 258-dim MediaPipe track."""

    def __init__(
        self, model_complexity: int = 1, min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5
    ):
        self.options = dict(
            static_image_mode=False,
            model_complexity=model_complexity,
            smooth_landmarks=True,
            min_detection_confidence=min_detection_confidence,
            min_tracking_confidence=min_tracking_confidence,
        )

    def extract_frames(self, frames_rgb: Iterable[np.ndarray]) -> TrackFrames:
        """Frames (H, W, 3) uint8 RGB, in order -> one utterance of the track."""
        import mediapipe as mp

        values, mask = [], []
        with mp.solutions.holistic.Holistic(**self.options) as holistic:
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
        """Decode a video file (OpenCV) and extract every frame."""
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise OSError(f"cannot open video {path}")

        def frames():
            while True:
                ok, bgr = cap.read()
                if not ok:
                    return
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

        try:
            return self.extract_frames(frames())
        except ValueError as err:
            raise ValueError(f"{path}: video has no decodable frames") from err
        finally:
            cap.release()
