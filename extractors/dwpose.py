"""DWPose track (384 dims): 128 whole-body keypoints x (x, y, score).

Order: 18 OpenPose body points (`OPENPOSE18`, neck = midpoint of the shoulders, as DWPose's OpenPose
conversion makes it), 68 face points (iBUG 300-W order), 21 left-hand and 21 right-hand points (`HAND21`);
the 6 foot points of COCO-WholeBody are dropped. x and y are normalised by the image width and height to
[0, 1]; score is the keypoint confidence. An undetected keypoint is (0, 0, 0).
"""

from __future__ import annotations

import numpy as np

from extractors.base import HAND21, TrackLayout, keypoint_names

OPENPOSE18: tuple[str, ...] = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist",
    "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle", "right_eye", "left_eye",
    "right_ear", "left_ear",
)  # fmt: skip
POINTS: tuple[str, ...] = (
    tuple(f"body.{p}" for p in OPENPOSE18)
    + tuple(f"face.{i}" for i in range(68))
    + tuple(f"left_hand.{p}" for p in HAND21)
    + tuple(f"right_hand.{p}" for p in HAND21)
)
LAYOUT = TrackLayout("dwpose", tuple(keypoint_names("dwpose", POINTS, ("x", "y", "score"))))
BODY, FACE, LEFT_HAND, RIGHT_HAND = slice(0, 18), slice(18, 86), slice(86, 107), slice(107, 128)


def to_vector(
    body: np.ndarray, face: np.ndarray, left_hand: np.ndarray, right_hand: np.ndarray, width: int, height: int
) -> np.ndarray:
    """Pixel keypoints with scores -> (T, 384).

    Args:
        body: (T, 18, 3) OpenPose-18 (x_px, y_px, score); face: (T, 68, 3); left_hand, right_hand: (T, 21, 3).
        width, height: the image size the pixel coordinates refer to.
    """
    parts = []
    for name, a, n in (
        ("body", body, 18),
        ("face", face, 68),
        ("left_hand", left_hand, 21),
        ("right_hand", right_hand, 21),
    ):
        a = np.asarray(a, dtype=np.float32)
        if a.ndim != 3 or a.shape[1:] != (n, 3):
            raise ValueError(f"{name}: expected (T, {n}, 3), got {a.shape}")
        parts.append(a)
    kp = np.concatenate(parts, axis=1).copy()  # (T, 128, 3)
    kp[..., 0] /= width
    kp[..., 1] /= height
    kp[kp[..., 2] <= 0] = 0.0  # undetected keypoints carry no position
    return kp.reshape(len(kp), 384)
