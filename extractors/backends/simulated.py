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
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from extractors import dwpose, maps, mediapipe
from extractors.backends._ground_truth import GroundTruth, dropouts, smooth_noise
from extractors.base import TrackFrames
from extractors.registry import Backend, register
from pipeline.corpus.motion import RELAXED_HS, Signer, hand_pose
from pipeline.corpus.skeleton import PART, J, P
from pipeline.layout import TRACK_ORDER
from pipeline.store import FrameStore

Sensor = Callable[[GroundTruth, np.random.Generator, float], TrackFrames]


class SimulatedSensor(Backend):
    """A track derived from the ground truth by `sense`, a sensor model of that extractor."""

    options = {"noise": 1.0}  # noise and failure multiplier (0 = a perfect sensor)
    sense: Sensor
    sensor_version = "signx simulated sensor v1"  # `version()`; a sensor model that changes says so here

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
        return self.sensor_version


def _sensor(track: str, version: str = SimulatedSensor.sensor_version) -> Callable[[Sensor], Sensor]:
    """Register `fn` as the sensor model of `track`'s simulated backend (and return it unchanged)."""

    def wrap(fn: Sensor) -> Sensor:
        attrs = {"sense": staticmethod(fn), "__doc__": fn.__doc__, "sensor_version": version}
        cls = type(f"Simulated_{track}", (SimulatedSensor,), attrs)
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


@dataclass(frozen=True)
class MediaPipeNoise:
    """The simulated MediaPipe's noise and failure levels (`simulate_mediapipe`).

    Calibrated against the real Holistic backend (mediapipe 0.10.14, model complexity 1) on this corpus' 128 x 128
    videos: per part detection rate, miss runs, keypoint error and its smoothness, z and visibility, measured by
    `python bench/calibrate_mediapipe.py` (figures in docs/EXTRACTORS.md, "Calibration of the simulated
    MediaPipe"). Jitter sds are fractions of the image size, distances fractions of the image height, failure
    probabilities per frame. The sensor's `noise` multiplies every jitter sd, spread and failure probability (and
    `visibility_half`): at 0 it is the perfect sensor (exact landmarks, visibility 1 inside the image and 0
    outside, no part ever lost).
    """

    # landmark jitter: temporally correlated (AR(1) with coefficient `*_rho`), as Holistic smooths its landmarks
    # over frames; measured errors hardly grow with speed (pose) or grow a little (hands: `hand_blur`)
    pose_sd_face: float = 0.013  # nose, eyes, ears, mouth
    pose_sd_shoulders: float = 0.025
    pose_sd_arms: float = 0.022  # elbows and wrists
    pose_sd_hand: float = 0.034  # the pose's pinky, index and thumb points (its coarse hand)
    pose_sd_legs: float = 0.045  # hips and below (mostly below the frame, guessed)
    pose_rho: float = 0.88
    pose_z: float = 5.0  # z jitter as a multiple of the xy jitter (Holistic's z is far noisier than its x, y)
    pose_miss: float = 0.0  # frames without a pose: never seen on this corpus (0 in the calibration sample)
    pose_miss_len: float = 2.0
    # visibility: 1 - a lognormal gap inside the image; outside, it falls with the distance beyond the border
    visibility_gap: float = 0.004  # median gap inside the image
    visibility_gap_spread: float = 2.0  # the gap's log-sd (mean visibility inside ~0.97)
    visibility_half: float = 0.1  # distance beyond the border where visibility halves
    visibility_power: float = 2.0  # how fast it falls beyond that
    visibility_spread: float = 2.5  # log-sd of the fall-off, per landmark and frame
    # hand landmarks: jitter (larger at the wrist and thumb base, which Holistic places off the skeleton's joints)
    hand_sd: float = 0.017
    hand_sd_base: float = 0.025  # wrist and thumb_cmc
    hand_blur: float = 0.001  # extra sd on a moving hand (motion blur), reached at `hand_moving_at` of speed
    hand_sd_face: float = 0.5  # the sd's relative increase in front of the face
    hand_sd_overlap: float = 1.0  # and with the hands overlapping
    hand_sd_spread: float = 0.5  # log-sd of a slowly varying factor on a hand's sd (some frames fit much worse)
    hand_rho: float = 0.8
    hand_z: float = 5.0  # z jitter as a multiple of the xy jitter
    # hand tracking is lost for runs of frames (`dropouts`): each frame starts a run with the sum of these
    hand_miss: float = 0.02  # any frame
    hand_miss_moving: float = 0.02  # a moving hand (motion blur), reached at `hand_moving_at` of speed
    hand_moving_at: float = 0.02  # wrist speed, fraction of the image height per frame
    hand_miss_shaped: float = 0.15  # a hand forming a handshape (the relaxed resting hand is found best), reached
    hand_shaped_at: float = 20.0  # at this mean angle (degrees) of the finger joints away from the relaxed hand
    hand_miss_face: float = 0.21  # the hand in front of the face (wrist within `face_radius` of the nose)
    face_radius: float = 0.2
    hand_miss_overlap: float = 0.115  # the hands overlapping (wrists within `overlap_radius`)
    overlap_radius: float = 0.12
    hand_miss_edge: float = 0.5  # part of the hand outside the image
    hand_miss_len: float = 2.7  # mean run length, frames


MEDIAPIPE = MediaPipeNoise()

# The 33 pose landmarks' jitter groups (`mediapipe.POSE33` order): 0 face (nose to mouth), 1 shoulders, 2 elbows
# and wrists, 3 the pose's pinky, index and thumb points, 4 hips and legs.
_POSE_GROUP = np.array([0] * 11 + [1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3] + [4] * 10)


def _hand_conditions(gt: GroundTruth, side: str, p: MediaPipeNoise) -> dict[str, np.ndarray]:
    """(T,) per frame, what makes Holistic's `side` hand harder to find and place: the hand moving (0-1, saturating
    at `hand_moving_at`), forming a handshape (0-1, saturating at `hand_shaped_at`), in front of the face,
    overlapping the other hand, partly outside the image."""
    H, other = gt.height, "right" if side == "left" else "left"
    wrist = gt.pixel([f"{side}_wrist"])[:, 0]
    first = J[f"{side}_index1"]
    bent = np.linalg.norm(gt.pose[:, first : first + 15] - hand_pose(RELAXED_HS[None], side)[0], axis=-1).mean(1)
    return {
        "moving": np.clip(gt.speed_px(f"{side}_wrist") / H / p.hand_moving_at, 0, 1),
        "shaped": np.clip(np.rad2deg(bent) / p.hand_shaped_at, 0, 1),
        "face": np.linalg.norm(wrist - gt.pixel(["face_30"])[:, 0], axis=1) < p.face_radius * H,
        "overlap": np.linalg.norm(wrist - gt.pixel([f"{other}_wrist"])[:, 0], axis=1) < p.overlap_radius * H,
        "edge": ~gt.in_frame(gt.pixel(hand_source(side))).all(1),
    }


@_sensor("mediapipe", version="signx simulated sensor v2 (MediaPipe calibrated against real Holistic)")
def simulate_mediapipe(
    gt: GroundTruth, rng: np.random.Generator, noise: float = 1.0, params: MediaPipeNoise = MEDIAPIPE
) -> TrackFrames:
    """MediaPipe Holistic as a sensor on the synthetic corpus (levels in `params`: `MediaPipeNoise`, calibrated
    against the real Holistic on this corpus' videos).

    Noise and failure model: temporally smooth landmark jitter (AR(1), as Holistic smooths over frames): pose sd
    1.3 % of the image on the face to 4.5 % on the hips; hands 1.7 % (2.5 % at the wrist and thumb base, which
    Holistic places off the skeleton's joints), x1.5 in front of the face, x2 with the hands overlapping, times a
    slowly varying log-normal factor (some frames fit much worse); z in MediaPipe's convention (hip- or
    wrist-relative, x scale) with 5x the xy jitter; visibility ~0.97 inside the image, falling with the distance
    beyond the border (the legs below the frame); hand tracking is lost for runs of frames (zeros for that hand),
    rarely for a relaxed hand at rest, more often for a hand forming a handshape, in front of the face, overlapping
    the other hand or partly outside the image, a little more when it moves; frames without a pose (all zeros,
    mask 0) are possible but at the calibrated level never happen, as with the real Holistic on this corpus.
    """
    p = params
    T, W, H = gt.n_frames, gt.width, gt.height
    f = gt.camera[:, 0]
    norm = np.array([W, H], dtype=np.float64)

    def landmarks(source, origin_depth: np.ndarray, sd: np.ndarray, rho: float, z_times: float) -> np.ndarray:
        """(T, n, 3) normalised x, y and MediaPipe z of `source`, with jitter of sd `sd` (T, n) and AR(1) `rho`."""
        uv = gt.pixel(source) / norm
        depth = np.stack([gt.world([k])[:, 0] for k in source], 1)  # (T, n, 3) world
        z_cam = gt.camera[:, None, 6] - depth[..., 2]  # distance along the optical axis
        z = (z_cam - origin_depth[:, None]) * f[:, None] / origin_depth[:, None] / W
        jitter = smooth_noise(rng, (T, len(source), 3), noise, rho=rho) * sd[..., None] * np.array([1, 1, z_times])
        return np.concatenate([uv, z[..., None]], -1) + jitter

    hips = gt.world([("left_hip", "right_hip")])[:, 0]
    pose_sd = np.array([p.pose_sd_face, p.pose_sd_shoulders, p.pose_sd_arms, p.pose_sd_hand, p.pose_sd_legs])
    pose_sd = np.tile(pose_sd[_POSE_GROUP], (T, 1))
    pose = landmarks(_POSE_SOURCE, gt.camera[:, 6] - hips[:, 2], pose_sd, p.pose_rho, p.pose_z)
    xy = pose[..., :2] * norm
    inside = gt.in_frame(xy)
    beyond = np.maximum(np.maximum(-xy, xy - norm), 0).max(-1) / H  # distance outside the image
    gap = np.clip(noise * p.visibility_gap * np.exp(rng.normal(0, p.visibility_gap_spread, inside.shape)), 0, 1)
    fall = (beyond / max(noise * p.visibility_half, 1e-9)) ** p.visibility_power
    fall = fall * np.exp(noise * rng.normal(0, p.visibility_spread, inside.shape))
    vis = np.where(inside, 1 - gap, (1 - gap) / (1 + fall) if noise > 0 else 0.0)
    pose = np.concatenate([pose, vis[..., None]], -1)
    base = np.zeros(21, dtype=bool)
    base[[0, 1]] = True  # wrist, thumb_cmc
    hands = {}
    for side in ("left", "right"):
        c = _hand_conditions(gt, side, p)
        harder = 1 + p.hand_sd_face * c["face"] + p.hand_sd_overlap * c["overlap"]
        harder = harder * np.exp(smooth_noise(rng, (T,), noise * p.hand_sd_spread, rho=p.hand_rho))
        sd = (np.where(base, p.hand_sd_base, p.hand_sd)[None, :] + p.hand_blur * c["moving"][:, None]) * harder[:, None]
        wrist = gt.world([f"{side}_wrist"])[:, 0]
        hand = landmarks(hand_source(side), gt.camera[:, 6] - wrist[:, 2], sd, p.hand_rho, p.hand_z)
        p_lost = (
            p.hand_miss
            + p.hand_miss_moving * c["moving"]
            + p.hand_miss_shaped * c["shaped"]
            + p.hand_miss_face * c["face"]
            + p.hand_miss_overlap * c["overlap"]
            + p.hand_miss_edge * c["edge"]
        )
        hands[side] = (hand, dropouts(rng, noise * p_lost, mean_len=p.hand_miss_len))
    mask = ~dropouts(rng, np.full(T, p.pose_miss * noise), mean_len=p.pose_miss_len)
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
