"""SMPLer-X track (165 dims): the SMPL-X full pose, 55 joints x axis-angle.

Order: global_orient, 21 body joints, jaw, left eye, right eye, 15 left-hand, 15 right-hand joints (SMPL-X joint
order, `pipeline.corpus.skeleton.JOINT_NAMES`), each as (x, y, z) of the axis-angle vector in radians.
"""

from __future__ import annotations

import numpy as np

from extractors.base import TrackLayout, keypoint_names
from pipeline.corpus.skeleton import JOINT_NAMES

LAYOUT = TrackLayout("smplerx", 165, tuple(keypoint_names("smplerx", JOINT_NAMES, "xyz")))
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
