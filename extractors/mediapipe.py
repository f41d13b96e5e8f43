"""MediaPipe track (258 dims): Holistic's 33 pose landmarks x (x, y, z, visibility), then 21 left-hand and 21
right-hand landmarks x (x, y, z).

x and y are normalised image coordinates; pose z is depth relative to the hip midpoint, hand z relative to the
wrist, both on roughly the scale of x (MediaPipe's conventions). "left" is the signer's left. A hand that is not
found is 63 zeros; a frame without a pose is all zeros with mask 0.
"""

from __future__ import annotations

import numpy as np

from extractors.base import HAND21, TrackLayout, keypoint_names

POSE33: tuple[str, ...] = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index",
    "left_thumb", "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)  # fmt: skip
LAYOUT = TrackLayout(
    "mediapipe",
    tuple(
        keypoint_names("mediapipe.pose", POSE33, ("x", "y", "z", "visibility"))
        + keypoint_names("mediapipe.left_hand", HAND21, "xyz")
        + keypoint_names("mediapipe.right_hand", HAND21, "xyz")
    ),
)
POSE, LEFT_HAND, RIGHT_HAND = slice(0, 132), slice(132, 195), slice(195, 258)


def to_vector(pose: np.ndarray, left_hand: np.ndarray | None, right_hand: np.ndarray | None) -> np.ndarray:
    """(33, 4) pose and (21, 3) hands (None: not found) of one frame -> (258,)."""
    pose = np.asarray(pose, dtype=np.float32)
    if pose.shape != (33, 4):
        raise ValueError(f"pose: expected (33, 4), got {pose.shape}")
    out = np.zeros(258, dtype=np.float32)
    out[POSE] = pose.reshape(-1)
    for sl, hand, name in ((LEFT_HAND, left_hand, "left_hand"), (RIGHT_HAND, right_hand, "right_hand")):
        if hand is not None:
            hand = np.asarray(hand, dtype=np.float32)
            if hand.shape != (21, 3):
                raise ValueError(f"{name}: expected (21, 3), got {hand.shape}")
            out[sl] = hand.reshape(-1)
    return out
