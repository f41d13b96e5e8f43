"""MediaPipe track (258 dims): Holistic's 33 pose landmarks x (x, y, z, visibility), then 21 left-hand and 21
right-hand landmarks x (x, y, z).

x and y are normalised image coordinates; pose z is depth relative to the hip midpoint, hand z relative to the
wrist, both on roughly the scale of x (MediaPipe's conventions). "left" is the signer's left. A hand that is not
found is 63 zeros; a frame without a pose is all zeros with mask 0.
"""

from __future__ import annotations

import numpy as np

from extractors.base import HAND21, TrackFrames, TrackLayout, keypoint_names
from extractors.dwpose import hand_source
from extractors.simulation import GroundTruth, dropouts

POSE33: tuple[str, ...] = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index",
    "left_thumb", "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)  # fmt: skip
LAYOUT = TrackLayout(
    "mediapipe",
    258,
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


_POSE_SOURCE = (
    "face_30", "face_42", tuple(f"face_{i}" for i in range(42, 48)), "face_45", "face_39",
    tuple(f"face_{i}" for i in range(36, 42)), "face_36", "left_ear", "right_ear", "face_54", "face_48",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky1",
    "right_pinky1", "left_index1", "right_index1", "left_thumb2", "right_thumb2", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel", "right_heel", "left_big_toe",
    "right_big_toe",
)  # fmt: skip


def simulate(gt: GroundTruth, rng: np.random.Generator, noise: float = 1.0) -> TrackFrames:
    """MediaPipe Holistic as a sensor on the synthetic corpus.

    Noise and failure model: landmark jitter (sd 0.4 % of the image for the pose, 0.6 % plus 10 % of the hand's
    image speed for hands); z in MediaPipe's convention (hip- or wrist-relative, x scale) with 3x the xy noise;
    visibility ~0.95 inside the image and 0.05-0.3 outside (legs below the frame); hand tracking is lost for
    runs of frames, more often on fast motion and when the hand is near the face (zeros for that hand);
    rare frames without a pose (all zeros, mask 0).
    """
    T, W, H = gt.n_frames, gt.width, gt.height
    f = gt.camera[:, 0]
    norm = np.array([W, H], dtype=np.float64)

    def landmarks(source, origin_depth: np.ndarray, sd: np.ndarray) -> np.ndarray:
        uv = gt.pixel(source) / norm
        depth = np.stack([gt.world([k])[:, 0] for k in source], 1)  # (T, n, 3) world
        z_cam = gt.camera[:, None, 6] - depth[..., 2]  # distance along the optical axis
        z = (z_cam - origin_depth[:, None]) * f[:, None] / origin_depth[:, None] / W
        jitter = rng.normal(0, 1, (T, len(source), 3)) * noise * sd[:, None, None] * np.array([1, 1, 3])
        return np.concatenate([uv, z[..., None]], -1) + jitter

    hips = gt.world([("left_hip", "right_hip")])[:, 0]
    hip_depth = gt.camera[:, 6] - hips[:, 2]
    pose = landmarks(_POSE_SOURCE, hip_depth, np.full(T, 0.004))
    inside = gt.in_frame(pose[..., :2] * norm)
    vis = np.where(inside, np.clip(rng.normal(0.95, 0.03, inside.shape), 0, 1), rng.uniform(0.05, 0.3, inside.shape))
    pose = np.concatenate([pose, vis[..., None]], -1)
    nose = gt.pixel(["face_30"])[:, 0]
    hands = {}
    for side in ("left", "right"):
        speed = gt.speed_px(f"{side}_wrist")
        wrist = gt.world([f"{side}_wrist"])[:, 0]
        hand = landmarks(hand_source(side), gt.camera[:, 6] - wrist[:, 2], 0.006 + 0.1 * speed / H)
        near_face = np.linalg.norm(gt.pixel([f"{side}_wrist"])[:, 0] - nose, axis=1) < 0.12 * H
        p_lost = 0.008 + np.clip(speed / H - 0.025, 0, None) * 3.0 + 0.04 * near_face
        hands[side] = (hand, dropouts(rng, noise * p_lost, mean_len=5))
    mask = ~dropouts(rng, np.full(T, 0.002 * noise), mean_len=2)
    values = np.zeros((T, 258), dtype=np.float32)
    for t in np.flatnonzero(mask):
        values[t] = to_vector(
            pose[t],
            None if hands["left"][1][t] else hands["left"][0][t],
            None if hands["right"][1][t] else hands["right"][0][t],
        )
    return TrackFrames(values, mask)
