"""DWPose track (384 dims): 128 whole-body keypoints x (x, y, score).

Order: 18 OpenPose body points (`OPENPOSE18`, neck = midpoint of the shoulders, as DWPose's OpenPose
conversion makes it), 68 face points (iBUG 300-W order), 21 left-hand and 21 right-hand points (`HAND21`);
the 6 foot points of COCO-WholeBody are dropped. x and y are normalised by the image width and height to
[0, 1]; score is the keypoint confidence. An undetected keypoint is (0, 0, 0).
"""

from __future__ import annotations

import numpy as np

from extractors.base import HAND21, TrackFrames, TrackLayout, keypoint_names
from extractors.simulation import GroundTruth, dropouts
from pipeline.corpus.skeleton import P

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
LAYOUT = TrackLayout("dwpose", 384, tuple(keypoint_names("dwpose", POINTS, ("x", "y", "score"))))
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


# Where each keypoint is on the synthetic signer (point names of `pipeline.corpus.skeleton`; tuples are means).
_BODY_SOURCE = (
    "face_30", ("left_shoulder", "right_shoulder"), "right_shoulder", "right_elbow", "right_wrist", "left_shoulder",
    "left_elbow", "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    tuple(f"face_{i}" for i in range(36, 42)), tuple(f"face_{i}" for i in range(42, 48)), "right_ear", "left_ear",
)  # fmt: skip


def hand_source(side: str) -> list[str]:
    """Skeleton point names of the 21 hand keypoints (`HAND21` order) of the `side` hand."""
    out = [f"{side}_wrist"]
    for finger in ("thumb", "index", "middle", "ring", "pinky"):
        out += [f"{side}_{finger}{k}" for k in (1, 2, 3)] + [f"{side}_{finger}_tip"]
    return out


def simulate(gt: GroundTruth, rng: np.random.Generator, noise: float = 1.0) -> TrackFrames:
    """DWPose as a sensor on the synthetic corpus.

    Noise and failure model: pixel jitter (sd 0.6 % of the image height for the body, 0.4 % face, 0.8 % hands,
    plus 15 % of the hand's own image speed: motion blur); confidence around 0.9 that drops with speed, for points
    outside the image (0.05-0.2) and for the farther hand when the hands overlap (occlusion); a hand is lost for
    runs of frames with a probability that grows with its speed (all 21 points zero); rare whole-frame misses.
    """

    T, H = gt.n_frames, gt.height
    parts = {"body": (_BODY_SOURCE, 0.006), "face": (tuple(f"face_{i}" for i in range(68)), 0.004)}
    out = {}
    for name, (source, sd) in parts.items():
        uv = gt.pixel(source) + rng.normal(0, 1, (T, len(source), 2)) * (noise * sd * H)
        score = np.clip(rng.normal(0.9, 0.04, (T, len(source))), 0.3, 1.0)
        score = np.where(gt.in_frame(uv), score, rng.uniform(0.05, 0.2, score.shape))
        out[name] = np.concatenate([uv, score[..., None]], -1)
    wrists = gt.pixel(["left_wrist", "right_wrist"])
    _, depth = gt.uv_depth
    overlap = np.linalg.norm(wrists[:, 0] - wrists[:, 1], axis=1) < 0.08 * H
    for side, other in (("left", "right"), ("right", "left")):
        speed = gt.speed_px(f"{side}_wrist")
        jitter = noise * (0.008 * H + 0.15 * speed)
        uv = gt.pixel(hand_source(side)) + rng.normal(0, 1, (T, 21, 2)) * jitter[:, None, None]
        score = np.clip(rng.normal(0.88, 0.05, (T, 21)) - 0.01 * speed[:, None], 0.05, 1.0)
        behind = overlap & (depth[:, P[f"{side}_wrist"]] > depth[:, P[f"{other}_wrist"]])
        score[behind] *= 0.5
        score = np.where(gt.in_frame(uv), score, rng.uniform(0.05, 0.2, score.shape))
        lost = dropouts(rng, noise * (0.005 + np.clip(speed / H - 0.03, 0, None) * 2.0), mean_len=3)
        hand = np.concatenate([uv, score[..., None]], -1)
        hand[lost] = 0.0
        out[f"{side}_hand"] = hand
    mask = ~dropouts(rng, np.full(T, 0.003 * noise), mean_len=2)
    values = to_vector(out["body"], out["face"], out["left_hand"], out["right_hand"], gt.width, gt.height)
    return TrackFrames(values * mask[:, None], mask)
