"""The synthetic signer's body: an SMPL-X-topology kinematic skeleton with surface landmarks.

One state per frame (55 local joint rotations + root translation + brow height) determines everything a
sensor could see: SMPL-X axis-angles, 3-D joints, the 68 face landmarks, fingertips, 2-D projections, and
(through `BODY_CAPSULES`) depth and body-part labels. Forward kinematics keeps every bone length fixed.

Coordinates follow SMPL-X: metres, +y up, +x the signer's left, +z the signer's front. The camera sits at
`+z` looking down `-z` (see `Camera`), so the signer's left hand appears on the image's right.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from extractors.maps import GOLIATH_CLASSES
from extractors.smplerx import JOINT_NAMES, SMPLX_FINGERS

# --- SMPL-X joints (the 55 of the full pose, in SMPL-X order: the smplerx track's format) ----------------
J = {name: i for i, name in enumerate(JOINT_NAMES)}
N_JOINTS = 55
PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 15, 15, 15,
    20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35, 20, 37, 38,
    21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50, 21, 52, 53,
)  # fmt: skip

# SMPL-X full-pose blocks (Section 3.1: 55 joints x axis-angle = 165 dims).
POSE_BLOCKS = {
    "global_orient": (0, 1), "body_pose": (1, 22), "jaw_pose": (22, 23), "leye_pose": (23, 24),
    "reye_pose": (24, 25), "left_hand_pose": (25, 40), "right_hand_pose": (40, 55),
}  # fmt: skip

# Sapiens body-part classes (the sapiens track's format), used for rendering colours and part labels.
PART = {name: i for i, name in enumerate(GOLIATH_CLASSES)}


@dataclass(frozen=True)
class BodyShape:
    """A signer's proportions, as multipliers of the reference adult (about 1.70 m)."""

    height: float = 1.0  # everything
    shoulder_width: float = 1.0  # collar + shoulder offsets
    arm_length: float = 1.0  # upper arm + forearm
    hand_size: float = 1.0  # palm and fingers
    head_size: float = 1.0  # skull and face
    girth: float = 1.0  # limb and torso radii (rendering, depth, part maps)


# --- rest skeleton --------------------------------------------------------------------------------------
# Offsets from each joint's parent in the rest (T-)pose, for the reference body. The left hand points +x with
# the palm facing down (-y) and the thumb forward (+z); the right side mirrors x.
_BODY_REST = {
    "pelvis": (0.0, 0.95, 0.0), "left_hip": (0.09, -0.08, 0.0), "spine1": (0.0, 0.11, -0.01),
    "left_knee": (0.0, -0.40, 0.0), "spine2": (0.0, 0.13, 0.0), "left_ankle": (0.0, -0.40, -0.02),
    "spine3": (0.0, 0.06, 0.01), "left_foot": (0.0, -0.06, 0.12), "neck": (0.0, 0.21, -0.02),
    "left_collar": (0.07, 0.11, -0.01), "head": (0.0, 0.09, 0.04), "left_shoulder": (0.11, 0.03, -0.01),
    "left_elbow": (0.26, 0.0, 0.0), "left_wrist": (0.25, 0.0, 0.0), "jaw": (0.0, -0.01, 0.02),
    "left_eye_smplhf": (0.032, 0.03, 0.085),
}  # fmt: skip
# Finger bases from the wrist, then two phalanx lengths (joint 1 -> 2 -> 3) and the distal length to the tip.
_FINGER_REST = {
    "index": ((0.090, 0.000, 0.025), (0.038, 0.024, 0.020)),
    "middle": ((0.095, 0.000, 0.005), (0.042, 0.027, 0.022)),
    "ring": ((0.088, 0.000, -0.013), (0.038, 0.025, 0.021)),
    "pinky": ((0.078, 0.000, -0.030), (0.030, 0.019, 0.018)),
    "thumb": ((0.025, -0.010, 0.025), (0.032, 0.028, 0.025)),
}
_THUMB_DIR = np.array([0.78, -0.15, 0.6]) / np.linalg.norm([0.78, -0.15, 0.6])  # thumb points forward-out


def _mirror(v: tuple[float, float, float]) -> tuple[float, float, float]:
    return (-v[0], v[1], v[2])


def _finger_dir(finger: str) -> np.ndarray:
    return _THUMB_DIR if finger == "thumb" else np.array([1.0, 0.0, 0.0])


def rest_offsets(shape: BodyShape) -> np.ndarray:
    """(55, 3) offsets of each joint from its parent in the rest pose, scaled to `shape`."""
    off = np.zeros((N_JOINTS, 3))
    for name, v in _BODY_REST.items():
        off[J[name]] = v
        if name.startswith("left_"):
            off[J["right_" + name[5:]]] = _mirror(v)
    for finger, (base, lengths) in _FINGER_REST.items():
        d = _finger_dir(finger)
        for side, sx in (("left", 1.0), ("right", -1.0)):
            m = np.array([sx, 1.0, 1.0])
            off[J[f"{side}_{finger}1"]] = np.array(base) * m
            off[J[f"{side}_{finger}2"]] = d * lengths[0] * m
            off[J[f"{side}_{finger}3"]] = d * lengths[1] * m
    off *= shape.height
    for side in ("left", "right"):
        off[J[f"{side}_collar"], 0] *= shape.shoulder_width
        off[J[f"{side}_shoulder"], 0] *= shape.shoulder_width
        off[J[f"{side}_elbow"]] *= shape.arm_length
        off[J[f"{side}_wrist"]] *= shape.arm_length
        for finger in SMPLX_FINGERS:
            for k in (1, 2, 3):
                off[J[f"{side}_{finger}{k}"]] *= shape.hand_size
    for name in ("jaw", "left_eye_smplhf", "right_eye_smplhf"):
        off[J[name]] *= shape.head_size
    return off


# --- surface landmarks: face 68 (iBUG 300-W order), fingertips, ears, heels, toes ------------------------
def _face68_template() -> np.ndarray:
    """(68, 3) face landmarks in the head joint's rest frame (reference head), iBUG 300-W order."""
    pts = np.zeros((68, 3))
    a = np.linspace(0.0, np.pi, 17)  # jaw line, signer's right (-x) to left (+x) through the chin
    pts[0:17] = np.stack([-0.068 * np.cos(a), 0.02 - 0.095 * np.sin(a), 0.02 + 0.07 * np.sin(a)], 1)
    bx = np.linspace(-0.055, -0.012, 5)  # right brow, outer to inner
    brow_y = 0.052 + 0.007 * np.sin(np.linspace(0.3, 2.8, 5))
    pts[17:22] = np.stack([bx, brow_y, 0.088 - 0.45 * np.abs(bx)], 1)
    pts[22:27] = pts[17:22][::-1] * [-1, 1, 1]  # left brow, inner to outer
    pts[27:31] = np.stack([np.zeros(4), np.linspace(0.035, 0.002, 4), np.linspace(0.094, 0.118, 4)], 1)
    nx = np.linspace(-0.016, 0.016, 5)
    pts[31:36] = np.stack([nx, -0.006 - 0.003 * np.cos(nx / 0.016 * np.pi / 2), 0.102 - 0.3 * np.abs(nx)], 1)

    def eye(cx: float) -> np.ndarray:
        # left corner (image left), upper lid, right corner, lower lid: iBUG order for both eyes
        t = np.array([np.pi, 2 * np.pi / 3, np.pi / 3, 0.0, -np.pi / 3, -2 * np.pi / 3])
        x = cx + 0.014 * np.cos(t)
        return np.stack([x, 0.03 + 0.005 * np.sin(t), 0.086 - 0.3 * np.abs(x)], 1)

    pts[36:42] = eye(-0.032)  # right eye: outer corner first
    pts[42:48] = eye(0.032)  # left eye: inner corner first
    t_out = np.concatenate([np.linspace(np.pi, 0.0, 7), np.linspace(-np.pi / 6, -5 * np.pi / 6, 5)])
    pts[48:60] = np.stack(
        [0.026 * np.cos(t_out), -0.036 + 0.009 * np.sin(t_out), 0.092 - 0.4 * np.abs(0.026 * np.cos(t_out))], 1
    )
    t_in = np.concatenate([np.linspace(np.pi, 0.0, 5), np.linspace(-np.pi / 4, -3 * np.pi / 4, 3)])
    pts[60:68] = np.stack(
        [0.018 * np.cos(t_in), -0.036 + 0.003 * np.sin(t_in), 0.09 - 0.4 * np.abs(0.018 * np.cos(t_in))], 1
    )
    return pts


FACE_JAW_ATTACHED = tuple(range(3, 14)) + (55, 56, 57, 58, 59, 65, 66, 67)  # chin, jaw and lower lip move with the jaw
FACE_BROWS = tuple(range(17, 27))

LANDMARK_NAMES: tuple[str, ...] = (
    *(f"face_{i}" for i in range(68)),
    *(f"{s}_{f}_tip" for s in ("left", "right") for f in ("thumb", "index", "middle", "ring", "pinky")),
    "left_ear", "right_ear", "left_heel", "right_heel", "left_big_toe", "right_big_toe",
)  # fmt: skip
N_LANDMARKS = len(LANDMARK_NAMES)  # 84
POINT_NAMES: tuple[str, ...] = JOINT_NAMES + LANDMARK_NAMES  # joints first, then landmarks
P = {name: i for i, name in enumerate(POINT_NAMES)}
N_POINTS = len(POINT_NAMES)  # 139


def landmark_rig(shape: BodyShape) -> tuple[np.ndarray, np.ndarray]:
    """Each landmark's parent joint and its offset in that joint's rest frame: ((84,), (84, 3))."""
    off = rest_offsets(shape)
    parent = np.zeros(N_LANDMARKS, dtype=np.int64)
    local = np.zeros((N_LANDMARKS, 3))
    face = _face68_template() * shape.height * shape.head_size
    jaw_off = off[J["jaw"]]
    for i in range(68):
        if i in FACE_JAW_ATTACHED:
            parent[i], local[i] = J["jaw"], face[i] - jaw_off
        else:
            parent[i], local[i] = J["head"], face[i]
    k = 68
    for side, sx in (("left", 1.0), ("right", -1.0)):
        for finger in ("thumb", "index", "middle", "ring", "pinky"):
            tip_len = _FINGER_REST[finger][1][2] * shape.height * shape.hand_size
            parent[k], local[k] = J[f"{side}_{finger}3"], _finger_dir(finger) * [sx, 1, 1] * tip_len
            k += 1
    hs = shape.height * shape.head_size
    for name, joint, v in (
        ("left_ear", "head", (0.075 * hs, 0.03 * hs, 0.0)),
        ("right_ear", "head", (-0.075 * hs, 0.03 * hs, 0.0)),
        ("left_heel", "left_ankle", (0.0, -0.07 * shape.height, -0.05 * shape.height)),
        ("right_heel", "right_ankle", (0.0, -0.07 * shape.height, -0.05 * shape.height)),
        ("left_big_toe", "left_foot", (0.02 * shape.height, -0.01 * shape.height, 0.08 * shape.height)),
        ("right_big_toe", "right_foot", (-0.02 * shape.height, -0.01 * shape.height, 0.08 * shape.height)),
    ):
        assert LANDMARK_NAMES[k] == name
        parent[k], local[k] = J[joint], v
        k += 1
    return parent, local


BROW_RAISE_M = 0.009  # brow landmarks move this far up (m, reference head) at brow = +1 (furrow: -1)


# --- forward kinematics ---------------------------------------------------------------------------------
def global_rotations(local_rotmats: np.ndarray) -> np.ndarray:
    """(T, 55, 3, 3) local joint rotations -> global rotations, walking the kinematic tree."""
    glob = np.empty_like(local_rotmats)
    for j in range(N_JOINTS):
        p = PARENTS[j]
        glob[:, j] = local_rotmats[:, j] if p < 0 else glob[:, p] @ local_rotmats[:, j]
    return glob


def joint_transforms(pose_aa: np.ndarray, transl: np.ndarray, shape: BodyShape) -> tuple[np.ndarray, np.ndarray]:
    """Forward kinematics of the 55 joints: (T, 55, 3) world positions and (T, 55, 3, 3) global rotations."""
    T = pose_aa.shape[0]
    rot = Rotation.from_rotvec(pose_aa.reshape(-1, 3)).as_matrix().reshape(T, N_JOINTS, 3, 3)
    glob = global_rotations(rot)
    off = rest_offsets(shape)
    pos = np.empty((T, N_JOINTS, 3))
    pos[:, 0] = off[0] + transl
    for j in range(1, N_JOINTS):
        p = PARENTS[j]
        pos[:, j] = pos[:, p] + glob[:, p] @ off[j]
    return pos, glob


def forward_kinematics(
    pose_aa: np.ndarray, transl: np.ndarray, shape: BodyShape, brow: np.ndarray | None = None
) -> np.ndarray:
    """All 139 points for every frame.

    Args:
        pose_aa: (T, 55, 3) SMPL-X axis-angle full pose (joint 0 is the global orientation).
        transl: (T, 3) root translation, added to the rest pelvis position.
        shape: the signer's body.
        brow: (T,) brow height in [-1, 1] (non-manual marker); None means neutral.

    Returns:
        (T, 139, 3) world positions: the 55 joints then the 84 landmarks (`POINT_NAMES`).
    """
    T = pose_aa.shape[0]
    pos, glob = joint_transforms(pose_aa, transl, shape)
    parent, local = landmark_rig(shape)
    local = np.broadcast_to(local, (T, N_LANDMARKS, 3)).copy()
    if brow is not None:
        local[:, FACE_BROWS, 1] += brow[:, None] * BROW_RAISE_M * shape.height * shape.head_size
    lm = pos[:, parent] + np.einsum("tlij,tlj->tli", glob[:, parent], local)
    return np.concatenate([pos, lm], axis=1)


def bone_lengths(points: np.ndarray) -> np.ndarray:
    """(T, 54) distance of every non-root joint from its parent (constant under forward kinematics)."""
    child = np.arange(1, N_JOINTS)
    return np.linalg.norm(points[:, child] - points[:, np.array(PARENTS[1:])], axis=-1)


# --- camera ---------------------------------------------------------------------------------------------
CAMERA_DIMS = ("fx", "fy", "cx", "cy", "cam_x", "cam_y", "cam_z")


def project(points: np.ndarray, camera: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pinhole projection of world points for a camera looking down -z (axes aligned with the world).

    Args:
        points: (T, N, 3) world points.
        camera: (T, 7) per frame `CAMERA_DIMS`: focal lengths and principal point in pixels, camera position.

    Returns:
        uv: (T, N, 2) pixel coordinates (x right, y down); depth: (T, N) distance along the optical axis.
    """
    fx, fy, cx, cy = (camera[:, i : i + 1] for i in range(4))
    rel = points - camera[:, None, 4:7]
    depth = -rel[..., 2]
    uv = np.stack([cx + fx * rel[..., 0] / depth, cy - fy * rel[..., 1] / depth], axis=-1)
    return uv, depth


# --- body geometry: capsules between points, shared by the renderer, depth and part-label maps ------------
@dataclass(frozen=True)
class Capsule:
    a: int  # point index (POINT_NAMES)
    b: int
    radius_a: float  # metres, reference body
    radius_b: float
    part: int  # Goliath class


def _finger_capsules(side: str) -> list[Capsule]:
    hand = PART[f"{side.capitalize()}_Hand"]
    caps = []
    for finger, r in (("thumb", 0.0105), ("index", 0.0095), ("middle", 0.0095), ("ring", 0.009), ("pinky", 0.008)):
        chain = [P[f"{side}_{finger}{k}"] for k in (1, 2, 3)] + [P[f"{side}_{finger}_tip"]]
        for a, b in zip(chain[:-1], chain[1:]):
            caps.append(Capsule(a, b, r, r * 0.92, hand))
    return caps


def _limb_capsules(side: str) -> list[Capsule]:
    s = side.capitalize()
    return [
        Capsule(P[f"{side}_shoulder"], P[f"{side}_elbow"], 0.05, 0.042, PART[f"{s}_Upper_Arm"]),
        Capsule(P[f"{side}_elbow"], P[f"{side}_wrist"], 0.04, 0.03, PART[f"{s}_Lower_Arm"]),
        Capsule(P[f"{side}_wrist"], P[f"{side}_middle1"], 0.032, 0.036, PART[f"{s}_Hand"]),  # palm
        Capsule(P[f"{side}_index1"], P[f"{side}_pinky1"], 0.016, 0.014, PART[f"{s}_Hand"]),  # knuckles
        Capsule(P[f"{side}_hip"], P[f"{side}_knee"], 0.08, 0.06, PART[f"{s}_Upper_Leg"]),
        Capsule(P[f"{side}_knee"], P[f"{side}_ankle"], 0.055, 0.045, PART[f"{s}_Lower_Leg"]),
        Capsule(P[f"{side}_heel"], P[f"{side}_big_toe"], 0.035, 0.03, PART[f"{s}_Shoe"]),
    ]


BODY_CAPSULES: tuple[Capsule, ...] = (
    Capsule(P["pelvis"], P["spine2"], 0.15, 0.14, PART["Upper_Clothing"]),
    Capsule(P["spine2"], P["neck"], 0.14, 0.12, PART["Upper_Clothing"]),
    Capsule(P["left_collar"], P["right_collar"], 0.07, 0.07, PART["Upper_Clothing"]),
    Capsule(P["left_hip"], P["right_hip"], 0.1, 0.1, PART["Lower_Clothing"]),
    Capsule(P["neck"], P["head"], 0.05, 0.05, PART["Face_Neck"]),
    *_limb_capsules("left"), *_limb_capsules("right"),
    *_finger_capsules("left"), *_finger_capsules("right"),
)  # fmt: skip
HEAD_RADII = (0.078, 0.105, 0.095)  # half width, half height, half depth of the skull ellipsoid (reference head)


def head_centre(points: np.ndarray, shape: BodyShape) -> np.ndarray:
    """(T, 3) centre of the head ellipsoid: midway between the ears, raised toward the crown."""
    ears = 0.5 * (points[:, P["left_ear"]] + points[:, P["right_ear"]])
    brow_mid = 0.5 * (points[:, P["face_21"]] + points[:, P["face_22"]])
    return ears + 0.35 * (brow_mid - ears) + np.array([0, 0.01, 0]) * shape.height * shape.head_size
