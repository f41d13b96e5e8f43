"""The `simulated` backend of every track: the five extractors as sensors on the synthetic corpus.

Each reads the synthetic corpus' ground truth (`skeleton.zarr`, `signers.json`), views it through the camera that
rendered the video (`_ground_truth.GroundTruth`), and applies that extractor's noise and failure model (each
function's docstring). This module and `_ground_truth` are the only extractor code that knows the synthetic signer.
An utterance draws from its own generator, seeded by (seed, track, manifest position), so the tracks do not
depend on how utterances are shared among workers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from extractors import dwpose, maps, mediapipe
from extractors.backends._ground_truth import GroundTruth, dropouts, smooth_noise
from extractors.base import TrackFrames
from extractors.registry import Backend, register
from pipeline.corpus.motion import Signer
from pipeline.corpus.skeleton import PART, J, P
from pipeline.layout import TRACK_ORDER
from pipeline.store import FrameStore

Sensor = Callable[[GroundTruth, np.random.Generator, float], TrackFrames]


class SimulatedSensor(Backend):
    """A track derived from the ground truth by `sense`, a sensor model of that extractor."""

    options = {"noise": 1.0}  # noise and failure multiplier (0 = a perfect sensor)
    sense: Sensor

    def __init__(self, options: dict, corpus_dir: Path, seed: int) -> None:
        super().__init__(options, corpus_dir, seed)
        self.noise = float(options["noise"])
        if self.noise < 0:
            raise ValueError(f"{self.track}.options.noise must be >= 0, got {self.noise}")
        if not (self.corpus_dir / "skeleton.zarr").exists():
            raise ValueError(
                f"{self.track}.backend simulated needs the synthetic corpus' skeleton.zarr in {self.corpus_dir}"
            )
        self.skeleton = FrameStore(self.corpus_dir / "skeleton.zarr")
        signers = json.loads((self.corpus_dir / "signers.json").read_text())
        self.signers = {s["signer_id"]: Signer.from_dict(s) for s in signers}

    def extract(self, row: dict, index: int) -> TrackFrames:
        values = self.skeleton.read(row["utt_id"])
        gt = GroundTruth(values, self.signers[row["signer"]], int(row["width"]), int(row["height"]))
        rng = np.random.default_rng([self.seed, TRACK_ORDER.index(self.track), index])
        return type(self).sense(gt, rng, self.noise)

    def version(self) -> str:
        return "signx simulated sensor v1"


def _sensor(track: str) -> Callable[[Sensor], Sensor]:
    """Register `fn` as the sensor model of `track`'s simulated backend (and return it unchanged)."""

    def wrap(fn: Sensor) -> Sensor:
        cls = type(f"Simulated_{track}", (SimulatedSensor,), {"sense": staticmethod(fn), "__doc__": fn.__doc__})
        register(track, "simulated", real=False)(cls)
        return fn

    return wrap


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


@_sensor("dwpose")
def simulate_dwpose(gt: GroundTruth, rng: np.random.Generator, noise: float = 1.0) -> TrackFrames:
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
    values = dwpose.to_vector(out["body"], out["face"], out["left_hand"], out["right_hand"], gt.width, gt.height)
    return TrackFrames(values * mask[:, None], mask)


_POSE_SOURCE = (
    "face_30", "face_42", tuple(f"face_{i}" for i in range(42, 48)), "face_45", "face_39",
    tuple(f"face_{i}" for i in range(36, 42)), "face_36", "left_ear", "right_ear", "face_54", "face_48",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky1",
    "right_pinky1", "left_index1", "right_index1", "left_thumb2", "right_thumb2", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel", "right_heel", "left_big_toe",
    "right_big_toe",
)  # fmt: skip


@_sensor("mediapipe")
def simulate_mediapipe(gt: GroundTruth, rng: np.random.Generator, noise: float = 1.0) -> TrackFrames:
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
        values[t] = mediapipe.to_vector(
            pose[t],
            None if hands["left"][1][t] else hands["left"][0][t],
            None if hands["right"][1][t] else hands["right"][0][t],
        )
    return TrackFrames(values, mask)


@_sensor("smplerx")
def simulate_smplerx(gt: GroundTruth, rng: np.random.Generator, noise: float = 1.0) -> TrackFrames:
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


@_sensor("primedepth")
def simulate_primedepth(gt: GroundTruth, rng: np.random.Generator, noise: float = 1.0) -> TrackFrames:
    """PrimeDepth as a sensor on the synthetic corpus: relative (per-frame normalised) depth of the signer crop.

    Noise and failure model: like monocular depth, only relative depth survives: the nearest body point is 1, the
    farthest 0.2, the background 0; edges are blurred (3 x 3 box) and every cell gets sd 0.02 noise.
    """
    depth, _ = gt.raster()
    body = np.isfinite(depth)
    d = np.where(body, depth, np.nan)
    near = np.nanmin(d.reshape(len(d), -1), axis=1)[:, None, None]
    far = np.nanmax(d.reshape(len(d), -1), axis=1)[:, None, None]
    rel = np.where(body, 0.2 + 0.8 * (far - np.nan_to_num(d)) / np.maximum(far - near, 1e-6), 0.0)
    if noise > 0:
        rel = np.stack([cv2.blur(m.astype(np.float32), (3, 3)) for m in rel])
    rel = np.clip(rel + rng.normal(0, 1, rel.shape) * (0.02 * noise), 0, 1)
    return TrackFrames(maps.depth_to_vector(rel), np.ones(len(rel), dtype=bool))


@_sensor("sapiens")
def simulate_sapiens(gt: GroundTruth, rng: np.random.Generator, noise: float = 1.0) -> TrackFrames:
    """Sapiens segmentation as a sensor on the synthetic corpus: body-part labels of the signer crop.

    Noise and failure model: boundary cells take a neighbour's label with probability 0.25 (coarse masks), and in
    2 % of frames the left and right hands / forearms are swapped (left-right confusion).
    """
    _, labels = gt.raster()
    lab = labels.astype(np.int64)
    padded = np.pad(lab, ((0, 0), (1, 1), (1, 1)), mode="edge")
    shifts = [padded[:, 1:-1, :-2], padded[:, 1:-1, 2:], padded[:, :-2, 1:-1], padded[:, 2:, 1:-1]]
    pick = rng.integers(0, 4, lab.shape)
    neighbour = np.choose(pick, shifts)
    lab = np.where((neighbour != lab) & (rng.random(lab.shape) < min(1.0, 0.25 * noise)), neighbour, lab)
    swap = rng.random(len(lab)) < 0.02 * noise
    for a, b in (("Left_Hand", "Right_Hand"), ("Left_Lower_Arm", "Right_Lower_Arm")):
        ia, ib = PART[a], PART[b]
        sl = lab[swap]
        lab[swap] = np.where(sl == ia, ib, np.where(sl == ib, ia, sl))
    return TrackFrames(maps.parts_to_vector(lab), np.ones(len(lab), dtype=bool))
