"""SMPLer-X track (165 dims): the SMPL-X full pose, 55 joints x axis-angle.

Order: global_orient, 21 body joints, jaw, left eye, right eye, 15 left-hand, 15 right-hand joints (SMPL-X joint
order, `pipeline.corpus.skeleton.JOINT_NAMES`), each as (x, y, z) of the axis-angle vector in radians.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from extractors.base import TrackFrames, TrackLayout, keypoint_names
from extractors.simulation import GroundTruth, dropouts, smooth_noise
from pipeline.corpus.skeleton import JOINT_NAMES, J

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


def simulate(gt: GroundTruth, rng: np.random.Generator, noise: float = 1.0) -> TrackFrames:
    """SMPLer-X as a sensor on the synthetic corpus.

    Noise and failure model: temporally smooth rotation noise on every joint (global 2 deg, body 3 deg, face 4 deg,
    fingers 8 deg: hands are SMPLer-X's weakest part); on fast hand motion (motion blur) the hand pose regresses
    toward the flat mean hand, up to 70 %; the person detector misses short runs of frames (all zeros, mask 0).
    """
    T = gt.n_frames
    sd = np.full(55, np.deg2rad(3.0))
    sd[0] = np.deg2rad(2.0)
    sd[22:25] = np.deg2rad(4.0)
    sd[25:] = np.deg2rad(8.0)
    jitter = smooth_noise(rng, (T, 55, 3), noise, rho=0.6) * sd[None, :, None]
    pose = (Rotation.from_rotvec(jitter.reshape(-1, 3)) * Rotation.from_rotvec(gt.pose.reshape(-1, 3))).as_rotvec()
    pose = pose.reshape(T, 55, 3)
    for side in ("left", "right"):
        blur = np.clip((gt.speed_px(f"{side}_wrist") / gt.height - 0.02) / 0.04, 0, 1)
        first = J[f"{side}_index1"]
        pose[:, first : first + 15] *= (1 - min(1.0, 0.7 * noise) * blur)[:, None, None]
    mask = ~dropouts(rng, np.full(T, 0.004 * noise), mean_len=2)
    values = pose.reshape(T, 165).astype(np.float32) * mask[:, None]
    return TrackFrames(values, mask)
