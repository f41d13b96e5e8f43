"""SMPLer-X track (165 dims): the SMPL-X full pose, 55 joints x axis-angle.

Order: global_orient, 21 body joints, jaw, left eye, right eye, 15 left-hand, 15 right-hand joints (SMPL-X joint
order, `JOINT_NAMES`), each as (x, y, z) of the axis-angle vector in radians.
"""

from __future__ import annotations

import numpy as np

from extractors.base import TrackLayout, keypoint_names

# The 55 joints of the SMPL-X full pose, in SMPL-X's order (its hand joints go index, middle, pinky, ring, thumb).
SMPLX_FINGERS = ("index", "middle", "pinky", "ring", "thumb")
JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "jaw", "left_eye_smplhf", "right_eye_smplhf",
    *(f"left_{f}{k}" for f in SMPLX_FINGERS for k in (1, 2, 3)),
    *(f"right_{f}{k}" for f in SMPLX_FINGERS for k in (1, 2, 3)),
)  # fmt: skip
LAYOUT = TrackLayout("smplerx", tuple(keypoint_names("smplerx", JOINT_NAMES, "xyz")))
SMPLX_PARAMS = ("global_orient", "body_pose", "jaw_pose", "leye_pose", "reye_pose", "left_hand_pose", "right_hand_pose")
_PARAM_JOINTS = {"global_orient": 1, "body_pose": 21, "jaw_pose": 1, "leye_pose": 1, "reye_pose": 1,
                 "left_hand_pose": 15, "right_hand_pose": 15}  # fmt: skip


def to_vector(**params: np.ndarray) -> np.ndarray:
    """SMPL-X parameters (each (T, joints * 3) or (T, joints, 3), as in SMPLer-X's per-frame output) -> (T, 165)."""
    missing = [k for k in SMPLX_PARAMS if k not in params]
    if missing:
        raise ValueError(f"SMPL-X parameters missing: {missing}")
    parts = []
    for k in SMPLX_PARAMS:
        a = np.asarray(params[k], dtype=np.float32)
        a = a.reshape(a.shape[0], -1)
        if a.shape[1] != 3 * _PARAM_JOINTS[k]:
            raise ValueError(f"{k}: expected {3 * _PARAM_JOINTS[k]} values per frame, got {a.shape[1]}")
        parts.append(a)
    return np.concatenate(parts, axis=1)
