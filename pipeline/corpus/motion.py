"""From glosses to motion: sign realisation, coarticulated utterance timelines, arm IK and the SMPL-X pose.

An utterance is a timeline of segments: rest, transition, sign, (pause), transition, sign, ..., rest.
Each sign is realised from its phonological parameters as hand trajectories (palm-centre position,
hand orientation and a 16-number handshape vector per hand) in the signer's rest body frame. Transitions
interpolate with minimum-jerk timing (positions), slerp (orientations) and handshape blending, and
coarticulation pulls each sign's location toward its neighbours and lets the next handshape start early.
Two-bone IK then turns hand targets into shoulder / elbow / wrist rotations, and every joint's rotation is
written as SMPL-X axis-angles, from which `skeleton.forward_kinematics` derives all points.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from pipeline.corpus.phonology import FINGERSPELL, HANDSHAPES, LOCATIONS, ORIENTATIONS, Handshape, Sign
from pipeline.corpus.skeleton import N_JOINTS, BodyShape, J, joint_transforms, rest_offsets


@dataclass(frozen=True)
class Signer:
    """A synthetic signer: body, handedness, signing style, appearance and camera framing."""

    signer_id: str
    shape: BodyShape
    dominant: str  # "right" or "left"
    speed: float  # > 1 signs faster
    amplitude: float  # movement size multiplier
    skin: tuple[int, int, int]  # BGR
    hair: tuple[int, int, int]
    shirt: tuple[int, int, int]
    long_sleeves: bool
    background: tuple[int, int, int]
    zoom: float  # framing: > 1 is a tighter shot
    offset: tuple[float, float]  # framing offset, fraction of the frame (x, y)
    yaw: float  # body turned away from the camera, radians
    brightness: float
    tint: tuple[float, float, float]  # per-channel (BGR) gain
    seen: bool  # False: held out entirely for the test_unseen split

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Signer:
        d = dict(d)
        d["shape"] = BodyShape(**d["shape"])
        for k in ("skin", "hair", "shirt", "background", "offset", "tint"):
            d[k] = tuple(d[k])
        return cls(**d)


@dataclass(frozen=True)
class Difficulty:
    """The knobs that make the corpus hard. Defaults are fixed by the corpus issue; see docs/CORPUS.md."""

    minimal_pair_fraction: float = 0.3  # share of glosses that belong to a minimal pair
    coarticulation: float = 0.35  # 0: citation forms; 1: strong assimilation to neighbours, short transitions
    signer_variation: float = 1.0  # scales body-proportion spread between signers
    speed_range: tuple[float, float] = (0.8, 1.25)  # per-signer signing speed
    amplitude_range: tuple[float, float] = (0.8, 1.2)  # per-signer movement size
    token_variation: float = 1.0  # scales per-token jitter (location, orientation, handshape, duration)
    pause_probability: float = 0.15  # chance of a hold after a sign in continuous signing
    framing_variation: float = 1.0  # scales camera zoom / offset / body-yaw spread
    lighting_variation: float = 1.0  # scales brightness / tint spread
    clutter: int = 6  # background objects per signer
    left_handed_fraction: float = 0.2  # share of signers whose dominant hand is the left


# --- handshape vectors: (index, middle, ring, pinky) x (MCP, PIP, DIP), spread, thumb (oppose, abduct, flex) ----
def handshape_vector(hs: Handshape) -> np.ndarray:
    return np.array([*hs.index, *hs.middle, *hs.ring, *hs.pinky, hs.spread, *hs.thumb], dtype=np.float64)


HS_VEC = {name: handshape_vector(hs) for name, hs in HANDSHAPES.items()}
RELAXED_HS = np.array([20, 25, 15, 22, 28, 15, 25, 30, 15, 28, 30, 15, 0.3, 10, 10, 10], dtype=np.float64)
_SPREAD_DEG = {"index": 9.0, "middle": 2.0, "ring": -6.0, "pinky": -12.0}  # per unit of spread
_THUMB_DIR = np.array([0.78, -0.15, 0.6]) / np.linalg.norm([0.78, -0.15, 0.6])
_THUMB_FLEX_AXIS = np.cross(_THUMB_DIR, [0.0, -1.0, 0.0])
_THUMB_FLEX_AXIS /= np.linalg.norm(_THUMB_FLEX_AXIS)


def hand_pose(hs: np.ndarray, side: str) -> np.ndarray:
    """(T, 16) handshape vectors -> (T, 15, 3) SMPL-X hand-joint axis-angles for the `side` hand.

    Built for the left hand (fingers +x, palm -y: flexion about -z, spread about y) and mirrored for the right.
    """
    T = hs.shape[0]
    deg = np.deg2rad(hs)
    out = np.zeros((T, 15, 3))
    z, y = np.array([0.0, 0.0, -1.0]), np.array([0.0, -1.0, 0.0])
    for f, finger in enumerate(("index", "middle", "ring", "pinky")):
        slot = {"index": 0, "middle": 1, "pinky": 2, "ring": 3}[finger]  # SMPL-X order: index, middle, pinky, ring
        mcp, pip, dip = deg[:, 3 * f], deg[:, 3 * f + 1], deg[:, 3 * f + 2]
        spread = np.deg2rad(_SPREAD_DEG[finger]) * hs[:, 12]
        base = Rotation.from_rotvec(y[None] * spread[:, None]) * Rotation.from_rotvec(z[None] * mcp[:, None])
        out[:, 3 * slot] = base.as_rotvec()
        out[:, 3 * slot + 1] = z * pip[:, None]
        out[:, 3 * slot + 2] = z * dip[:, None]
    oppose, abduct, flex = deg[:, 13], deg[:, 14], deg[:, 15]
    thumb1 = Rotation.from_rotvec(np.array([1.0, 0, 0]) * oppose[:, None]) * Rotation.from_rotvec(
        np.array([0, -1.0, 0]) * abduct[:, None]
    )
    out[:, 12] = thumb1.as_rotvec()
    out[:, 13] = _THUMB_FLEX_AXIS * flex[:, None]
    out[:, 14] = _THUMB_FLEX_AXIS * 0.8 * flex[:, None]
    if side == "right":
        out *= np.array([1.0, -1.0, -1.0])  # mirror across the sagittal plane
    return out


def min_jerk(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x**3 * (10 - 15 * x + 6 * x**2)


@dataclass
class HandTrack:
    """A hand's targets over frames, in the signer's rest body frame."""

    pos: np.ndarray  # (T, 3) palm-centre position
    rot: Rotation  # T global hand orientations
    hs: np.ndarray  # (T, 16) handshape vector

    @staticmethod
    def constant(pos: np.ndarray, rot: Rotation, hs: np.ndarray, n: int) -> HandTrack:
        return HandTrack(np.repeat(pos[None], n, 0), Rotation.concatenate([rot] * n), np.repeat(hs[None], n, 0))

    def at(self, i: int) -> tuple[np.ndarray, Rotation, np.ndarray]:
        return self.pos[i], self.rot[i], self.hs[i]


@dataclass(frozen=True)
class TokenJitter:
    """Per-token variation: no two productions of a sign are identical."""

    location: np.ndarray  # (3,) metres
    orientation: np.ndarray  # (3,) rotvec
    handshape: np.ndarray  # (16,) degrees / spread units
    amplitude: float
    duration: float

    @staticmethod
    def sample(rng: np.random.Generator, scale: float) -> TokenJitter:
        hs = rng.normal(0, 4.0 * scale, 16)
        hs[12] = rng.normal(0, 0.08 * scale)
        return TokenJitter(
            location=rng.normal(0, 0.015 * scale, 3),
            orientation=rng.normal(0, np.deg2rad(6.0) * scale, 3),
            handshape=hs,
            amplitude=float(np.exp(rng.normal(0, 0.12 * scale))),
            duration=float(np.exp(rng.normal(0, 0.1 * scale))),
        )


class Body:
    """A signer's rest-frame geometry: where locations are and which way is ipsilateral for each hand."""

    def __init__(self, signer: Signer):
        self.signer = signer
        self.shape = signer.shape
        pos, _ = joint_transforms(np.zeros((1, N_JOINTS, 3)), np.zeros((1, 3)), signer.shape)
        self.rest = pos[0]
        self.dom = signer.dominant
        self.nondom = "left" if self.dom == "right" else "right"

    @staticmethod
    def ipsi(side: str) -> float:
        return 1.0 if side == "left" else -1.0  # SMPL-X +x is the signer's left

    def location(self, name: str, side: str) -> np.ndarray:
        anchor, (x, y, z) = LOCATIONS[name]
        scale = self.shape.height * (self.shape.head_size if anchor == "head" else 1.0)
        return self.rest[J[anchor]] + np.array([self.ipsi(side) * x, y, z]) * scale

    def orientation(self, name: str, side: str) -> Rotation:
        (pn, fd) = ORIENTATIONS[name]
        s = self.ipsi(side)
        return hand_rotation(np.array([s * pn[0], pn[1], pn[2]]), np.array([s * fd[0], fd[1], fd[2]]), side)

    def rest_hand(self, side: str) -> tuple[np.ndarray, Rotation, np.ndarray]:
        s, h = self.ipsi(side), self.shape.height
        pos = self.rest[J["pelvis"]] + np.array([s * 0.13, 0.06, 0.19]) * h
        rot = hand_rotation(np.array([0.0, -1.0, 0.0]), np.array([-s * 0.5, 0.0, 1.0]), side)
        return pos, rot, RELAXED_HS

    def base_hand(self) -> tuple[np.ndarray, Rotation, np.ndarray]:
        """The non-dominant hand as a static base (two_base signs): palm up, in front of the body."""
        s = self.ipsi(self.nondom)
        pos = self.rest[J["spine3"]] + np.array([s * 0.03, -0.12, 0.33]) * self.shape.height
        rot = hand_rotation(np.array([0.0, 1.0, 0.0]), np.array([-s * 0.4, 0.0, 1.0]), self.nondom)
        return pos, rot, HS_VEC["B"]


def hand_rotation(palm: np.ndarray, fingers: np.ndarray, side: str) -> Rotation:
    """The global hand rotation whose palm faces `palm` and whose fingers point along `fingers`."""
    f = fingers / np.linalg.norm(fingers)
    n = palm - f * (palm @ f)
    n /= np.linalg.norm(n)
    f0 = np.array([1.0 if side == "left" else -1.0, 0.0, 0.0])  # rest: fingers along the arm
    n0 = np.array([0.0, -1.0, 0.0])  # rest: palm down
    target = np.stack([f, n, np.cross(f, n)], 1)
    rest = np.stack([f0, n0, np.cross(f0, n0)], 1)
    return Rotation.from_matrix(target @ rest.T)


def _movement(
    sign: Sign, phi: np.ndarray, amp: float, side: str, phase: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Path offset (n, 3), twist angle (n,) and finger-wiggle phase (n,) at movement phase `phi` in [0, reps]."""
    s = Body.ipsi(side)
    ipsi, up, fwd = np.array([s, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0])
    contra = -ipsi
    phi = phi + phase
    k = np.floor(np.minimum(phi, sign.repetition + 1 - 1e-9))
    e = min_jerk(phi - k)
    g = np.where(k % 2 == 0, e, 1.0 - e)[:, None]  # repeated movements go back and forth
    zero = np.zeros((len(phi), 3))
    twist, wiggle = np.zeros(len(phi)), np.zeros(len(phi))
    m = sign.movement
    if m == "hold":
        off = zero
    elif m == "straight_fwd":
        off = fwd * amp * (g - 0.5)
    elif m == "straight_down":
        off = -up * amp * (g - 0.5)
    elif m == "straight_up":
        off = up * amp * (g - 0.5)
    elif m == "straight_contra":
        off = contra * amp * (g - 0.5)
    elif m == "arc":
        th = np.pi * g
        off = 0.5 * amp * (-contra * np.cos(th) + up * np.sin(th))
    elif m in ("circle", "circle_horizontal"):
        th = (2 * np.pi * (k + e))[:, None]
        off = 0.5 * amp * (contra * np.cos(th) + (up if m == "circle" else fwd) * np.sin(th))
    elif m == "zigzag":
        off = -up * amp * (g - 0.5) + contra * 0.25 * amp * np.sin(4 * np.pi * g)
    elif m == "tap":
        toward = -up if sign.location == "base_hand" else -fwd
        off = toward * 0.35 * amp * np.sin(np.pi * e[:, None]) ** 2
    elif m == "twist":
        off, twist = zero, 1.2 * (g[:, 0] - 0.5)
    elif m == "wiggle":
        off, wiggle = zero, 2 * np.pi * 2 * phi
    elif m == FINGERSPELL:
        off = ipsi * 0.3 * amp * np.clip(phi, 0, 1)[:, None]
    else:
        raise ValueError(f"unknown movement {m!r}")
    return off, twist, wiggle


def _sign_handshapes(sign: Sign, prog: np.ndarray, wiggle: np.ndarray) -> np.ndarray:
    """(n, 16) handshape over the sign's movement progress `prog` in [0, 1]."""
    if sign.letters:
        hs = np.stack([HS_VEC[h] for h in sign.letters])
        x = np.clip(prog, 0, 1 - 1e-9) * len(sign.letters)
        i = np.floor(x).astype(int)
        nxt = np.minimum(i + 1, len(sign.letters) - 1)
        b = min_jerk((x - i - 0.6) / 0.4)[:, None]  # hold each letter, then move to the next
        return (1 - b) * hs[i] + b * hs[nxt]
    start = HS_VEC[sign.handshape]
    end = HS_VEC[sign.handshape_end] if sign.handshape_end else start
    out = start + min_jerk(prog)[:, None] * (end - start)
    if np.any(wiggle):
        for f in range(4):  # fingers wiggle out of phase at the MCP joints
            out[:, 3 * f] += 20.0 * np.sin(wiggle + f * np.pi / 2)
    return out


@dataclass(frozen=True)
class SignPlan:
    sign: Sign
    jitter: TokenJitter
    shift: np.ndarray  # (3,) coarticulation pull toward neighbouring signs
    amp: float  # movement amplitude, metres


def realise_sign(plan: SignPlan, body: Body, u: np.ndarray) -> tuple[HandTrack, HandTrack, np.ndarray]:
    """Both hands and the non-manual channels of one sign at local times `u` in [0, 1].

    Returns:
        (dominant hand, non-dominant hand, (n, 4) non-manuals: brow, head pitch, head yaw, jaw opening).
    """
    sign, jit = plan.sign, plan.jitter
    prog = np.clip((u - 0.12) / 0.76, 0.0, 1.0)  # onset hold, movement, offset hold
    reps = 1 if sign.letters else sign.repetition
    phi = prog * reps

    def hand(side: str, phase: float) -> HandTrack:
        off, twist, wiggle = _movement(sign, phi, plan.amp, side, phase)
        if sign.location == "base_hand":
            base_pos, _, _ = body.base_hand()
            loc = base_pos + np.array([0.0, 0.05, 0.0]) * body.shape.height
        else:
            loc = body.location(sign.location, side)
        mirror = np.array([1.0 if side == body.dom else -1.0, 1.0, 1.0])
        pos = loc + (plan.shift + jit.location) * mirror + off
        base_rot = Rotation.from_rotvec(jit.orientation * ([1.0, -1.0, -1.0] if side != body.dom else 1.0))
        rot = base_rot * body.orientation(sign.orientation, side)
        if np.any(twist):
            axis = rot.apply(np.array([1.0 if side == "left" else -1.0, 0.0, 0.0]))  # along the fingers
            rot = Rotation.from_rotvec(axis * twist[:, None]) * rot
        else:
            rot = Rotation.concatenate([rot] * len(u))
        hs = _sign_handshapes(sign, prog, wiggle) + jit.handshape
        return HandTrack(pos, rot, hs)

    dom = hand(body.dom, 0.0)
    if sign.hands in ("two_sym", "two_alt"):
        circle = sign.movement in ("circle", "circle_horizontal")
        nondom = hand(body.nondom, (0.5 if circle else 1.0) if sign.hands == "two_alt" else 0.0)
    elif sign.hands == "two_base":
        nondom = HandTrack.constant(*body.base_hand(), len(u))
    else:
        nondom = HandTrack.constant(*body.rest_hand(body.nondom), len(u))
    env = min_jerk(u / 0.2) * min_jerk((1 - u) / 0.2)  # non-manuals ramp in and out
    nmm = np.zeros((len(u), 4))
    osc = np.sin(2 * np.pi * 2 * u)
    col, val = {
        "brow_raise": (0, env), "brow_furrow": (0, -env), "head_nod": (1, 0.2 * osc * env),
        "head_shake": (2, 0.3 * osc * env), "mouth_open": (3, 0.25 * env), "none": (0, 0 * env),
    }[sign.nmm]  # fmt: skip
    nmm[:, col] = val
    return dom, nondom, nmm


# --- utterance timelines --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Motion:
    """One utterance's ground-truth motion."""

    pose: np.ndarray  # (T, 55, 3) SMPL-X axis-angle full pose
    transl: np.ndarray  # (T, 3) root translation
    brow: np.ndarray  # (T,) brow height, -1 (furrow) .. 1 (raise)
    token: np.ndarray  # (T,) int16: index of the token being signed; -1 during rest, transitions and pauses


def sign_duration(sign: Sign) -> float:
    """Citation-form duration in seconds at speed 1: holds around a movement of `repetition` strokes."""
    if sign.letters:
        return 0.15 + 0.16 * len(sign.letters)
    if sign.movement == "hold":
        return 0.35
    return 0.2 + 0.2 * sign.repetition


def plan_signs(
    signs: list[Sign], body: Body, diff: Difficulty, rng: np.random.Generator, continuous: bool
) -> list[SignPlan]:
    """Per-token jitter, coarticulatory location shifts and amplitudes for a sequence of signs."""
    jitters = [TokenJitter.sample(rng, diff.token_variation) for _ in signs]
    locs = [body.base_hand()[0] if s.location == "base_hand" else body.location(s.location, body.dom) for s in signs]
    plans = []
    for i, sign in enumerate(signs):
        shift = np.zeros(3)
        if continuous:  # assimilation: each sign drifts toward where its neighbours are made
            for j in (i - 1, i + 1):
                if 0 <= j < len(signs):
                    shift += 0.2 * diff.coarticulation * (locs[j] - locs[i])
        amp = 0.12 * body.shape.height * body.signer.amplitude * jitters[i].amplitude
        if continuous:
            amp *= 1.0 - 0.3 * diff.coarticulation  # reduced movements in fluent signing
        plans.append(SignPlan(sign, jitters[i], shift, amp))
    return plans


def _idle_pose(times: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(T, 55, 3) small, smooth body sway and breathing for the spine, neck and head."""
    pose = np.zeros((len(times), N_JOINTS, 3))
    for joint, amp in (("spine1", 0.02), ("spine2", 0.015), ("spine3", 0.015), ("neck", 0.02), ("head", 0.03)):
        freq = rng.uniform(0.15, 0.45, 3)
        phase = rng.uniform(0, 2 * np.pi, 3)
        pose[:, J[joint]] = amp * np.sin(2 * np.pi * freq * times[:, None] + phase)
    pose[:, J["spine3"], 0] += 0.01 * np.sin(2 * np.pi * 0.25 * times + rng.uniform(0, 2 * np.pi))  # breathing
    return pose


def utterance_motion(
    signs: list[Sign], signer: Signer, fps: float, diff: Difficulty, rng: np.random.Generator, continuous: bool = True
) -> Motion:
    """The full-body motion of `signer` producing `signs`, sampled at `fps`.

    The random draws happen in a fixed order that the corpus' bytes depend on (`rng` is seeded per utterance):
    the sign plans, the schedule's timings, then the idle body motion."""
    body = Body(signer)
    plans = plan_signs(signs, body, diff, rng, continuous)
    coart = diff.coarticulation if continuous else 0.0
    segs, duration = _schedule(plans, signer.speed, coart, diff.pause_probability if continuous else None, rng)
    times = np.arange(max(2, int(round(duration * fps)))) / fps
    hands = _HandTracks(plans, body, coart)
    pos, quat, hs, nmm, token = hands.sample(segs, times)
    pose = _head_pose(_idle_pose(times, rng), signer, nmm)
    transl = np.zeros((len(times), 3))
    _reach(pose, transl, body, signer, pos, quat, hs)
    return Motion(pose=pose, transl=transl, brow=nmm[:, 0], token=token)


Segment = tuple[str, float, float, int]  # (kind, start, duration, token index)


def _schedule(
    plans: list, speed: float, coart: float, pause_probability: float | None, rng: np.random.Generator
) -> tuple[list[Segment], float]:
    """Rest, then a transition and the sign for each token (with a hold after it when a pause is drawn; None: no
    pauses), a transition back and rest. Returns the segments and the utterance's duration in seconds."""
    segs: list[Segment] = []
    t = float(rng.uniform(0.25, 0.5))
    segs.append(("rest", 0.0, t, -1))
    for i, plan in enumerate(plans):
        trans = (0.3 if i == 0 else 0.2 * (1 - 0.4 * coart)) / speed * rng.uniform(0.8, 1.2)
        segs.append(("trans", t, trans, i))
        t += trans
        dur = sign_duration(plan.sign) / speed * plan.jitter.duration
        segs.append(("sign", t, dur, i))
        t += dur
        if pause_probability is not None and i < len(plans) - 1 and rng.random() < pause_probability:
            hold = float(rng.uniform(0.2, 0.45))
            segs.append(("hold", t, hold, i))
            t += hold
    segs.append(("trans", t, 0.3 / speed, len(plans)))
    t += 0.3 / speed
    end_rest = float(rng.uniform(0.25, 0.5))
    segs.append(("rest", t, end_rest, -1))
    return segs, t + end_rest


class _HandTracks:
    """Both hands' position, orientation and handshape over a schedule, with coarticulation between signs."""

    def __init__(self, plans: list, body: Body, coart: float) -> None:
        self.plans, self.body, self.coart = plans, body, coart
        self.rest = {side: body.rest_hand(side) for side in (body.dom, body.nondom)}

    def _two_handed(self, i: int) -> bool:
        return 0 <= i < len(self.plans) and self.plans[i].sign.hands != "one"

    def sign_state(self, i: int, u: np.ndarray) -> tuple[HandTrack, HandTrack, np.ndarray]:
        """Token i's (dominant, non-dominant, non-manual) tracks at phases `u` in [0, 1]."""
        plans, body, coart = self.plans, self.body, self.coart
        dom, nondom, nmm = realise_sign(plans[i], body, u)
        if i + 1 < len(plans) and coart > 0:  # anticipate the next handshape in the last part of the sign
            nxt, _, _ = realise_sign(plans[i + 1], body, np.zeros(1))
            a = 0.3 * coart
            b = 0.5 * min_jerk((u - (1 - a)) / a)[:, None]
            dom.hs = (1 - b) * dom.hs + b * nxt.hs[0]
        if plans[i].sign.hands == "one" and coart > 0:  # keep the weak hand up between two-handed signs
            j = i - 1 if self._two_handed(i - 1) else i + 1 if self._two_handed(i + 1) else None
            if j is not None:
                _, other, _ = realise_sign(plans[j], body, np.array([0.0 if j > i else 1.0]))
                nondom.pos = nondom.pos + coart * (other.pos[0] - nondom.pos)
        return dom, nondom, nmm

    def endpoint(self, i: int, start: bool) -> tuple[tuple, tuple]:
        """(dominant, non-dominant) hand state at the start or end of token i (rest outside the utterance)."""
        if i < 0 or i >= len(self.plans):
            return self.rest[self.body.dom], self.rest[self.body.nondom]
        dom, nondom, _ = self.sign_state(i, np.array([0.0 if start else 1.0]))
        return dom.at(0), nondom.at(0)

    def sample(self, segs: list[Segment], times: np.ndarray) -> tuple[dict, dict, dict, np.ndarray, np.ndarray]:
        """pos, quat, hs ({0: dominant, 1: non-dominant} -> (T, 3), (T, 4), (T, 16)), nmm (T, 4), token (T,)."""
        n = len(times)
        pos, quat, hs = ({h: np.zeros((n, d)) for h in (0, 1)} for d in (3, 4, 16))
        nmm, token = np.zeros((n, 4)), np.full(n, -1, dtype=np.int16)
        seg_of_frame = np.searchsorted([s[1] for s in segs], times, side="right") - 1
        for k, (kind, start, dur, i) in enumerate(segs):
            idx = np.flatnonzero(seg_of_frame == k)
            if len(idx) == 0:
                continue
            x = (times[idx] - start) / dur
            if kind == "sign":
                tracks = self.sign_state(i, x)
                nmm[idx], token[idx] = tracks[2], i
                for h in (0, 1):
                    pos[h][idx], quat[h][idx], hs[h][idx] = tracks[h].pos, tracks[h].rot.as_quat(), tracks[h].hs
            elif kind in ("rest", "hold"):
                states = self.endpoint(i, start=False) if kind == "hold" else self.endpoint(-1, start=False)
                for h in (0, 1):
                    p, r, s = states[h]
                    pos[h][idx], quat[h][idx], hs[h][idx] = p, r.as_quat(), s
            else:  # transition from the end of token i-1 to the start of token i
                a, b = self.endpoint(i - 1, start=False), self.endpoint(i, start=True)
                w = min_jerk(x)
                for h in (0, 1):
                    (p0, r0, s0), (p1, r1, s1) = a[h], b[h]
                    pos[h][idx] = p0 + w[:, None] * (p1 - p0)
                    quat[h][idx] = Slerp([0.0, 1.0], Rotation.concatenate([r0, r1]))(w).as_quat()
                    hs[h][idx] = s0 + w[:, None] * (s1 - s0)
        return pos, quat, hs, nmm, token


def _head_pose(pose: np.ndarray, signer: Signer, nmm: np.ndarray) -> np.ndarray:
    """The idle pose turned by the signer's yaw, with the non-manual head nod / shake and mouth opening."""
    n = len(pose)
    pose[:, 0, 1] += signer.yaw
    head = Rotation.from_rotvec(np.stack([nmm[:, 1], np.zeros(n), np.zeros(n)], 1))
    head = Rotation.from_rotvec(np.stack([np.zeros(n), nmm[:, 2], np.zeros(n)], 1)) * head
    pose[:, J["neck"]] = (
        Rotation.from_rotvec(pose[:, J["neck"]]) * Rotation.from_rotvec(0.4 * head.as_rotvec())
    ).as_rotvec()
    pose[:, J["head"]] = (
        Rotation.from_rotvec(pose[:, J["head"]]) * Rotation.from_rotvec(0.6 * head.as_rotvec())
    ).as_rotvec()
    pose[:, J["jaw"], 0] = nmm[:, 3]
    return pose


def _reach(pose: np.ndarray, transl: np.ndarray, body: Body, signer: Signer, pos: dict, quat: dict, hs: dict) -> None:
    """Arms (inverse kinematics) and fingers of `pose`, in place, for the hand targets. The torso is independent
    of the arms: it is solved first, then the hands reach from it."""
    jpos, jrot = joint_transforms(pose, transl, signer.shape)
    spine_p, spine_r = jpos[:, J["spine3"]], jrot[:, J["spine3"]]
    for h, side in ((0, body.dom), (1, body.nondom)):
        target = spine_p + np.einsum("tij,tj->ti", spine_r, pos[h] - body.rest[J["spine3"]])
        hand_rot = spine_r @ Rotation.from_quat(quat[h]).as_matrix()
        sh, el, wr = arm_ik(
            jpos[:, J[f"{side}_shoulder"]], jrot[:, J[f"{side}_collar"]], target, hand_rot, signer.shape, side
        )
        pose[:, J[f"{side}_shoulder"]], pose[:, J[f"{side}_elbow"]], pose[:, J[f"{side}_wrist"]] = sh, el, wr
        first = J[f"{side}_index1"]
        pose[:, first : first + 15] = hand_pose(hs[h], side)


# --- inverse kinematics ----------------------------------------------------------------------------------------
def palm_offset(shape: BodyShape, side: str) -> np.ndarray:
    """Palm centre relative to the wrist, in the hand's rest frame."""
    return np.array([0.045 if side == "left" else -0.045, -0.02, 0.0]) * shape.height * shape.hand_size


def arm_ik(
    shoulder: np.ndarray, collar_rot: np.ndarray, palm: np.ndarray, hand_rot: np.ndarray, shape: BodyShape, side: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Analytic two-bone IK with the elbow hanging down and out.

    Args:
        shoulder: (T, 3) shoulder joint positions; collar_rot: (T, 3, 3) global rotation of the collar (parent).
        palm: (T, 3) palm-centre targets; hand_rot: (T, 3, 3) desired global hand rotations.

    Returns:
        Local axis-angles (T, 3) of shoulder, elbow and wrist. Forearm twist (pronation) is carried by the elbow,
        the wrist only bends; targets out of reach are approached as closely as the arm allows.
    """
    off = rest_offsets(shape)
    l1, l2 = np.linalg.norm(off[J[f"{side}_elbow"]]), np.linalg.norm(off[J[f"{side}_wrist"]])
    s = 1.0 if side == "left" else -1.0
    wrist = palm - np.einsum("tij,j->ti", hand_rot, palm_offset(shape, side))
    d_vec = wrist - shoulder
    d_raw = np.linalg.norm(d_vec, axis=1, keepdims=True)
    u = d_vec / np.maximum(d_raw, 1e-9)
    d = np.clip(d_raw, abs(l1 - l2) + 1e-4, l1 + l2 - 1e-4)
    pole = np.array([0.45 * s, -1.0, -0.25])  # elbows hang down, slightly out and back
    v = pole - (u @ pole)[:, None] * u
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    cos_a = (l1**2 + d**2 - l2**2) / (2 * l1 * d)
    sin_a = np.sqrt(np.clip(1 - cos_a**2, 0, 1))
    b1 = cos_a * u + sin_a * v  # upper-arm direction
    elbow = shoulder + l1 * b1
    b2 = (shoulder + d * u - elbow) / l2  # forearm direction
    hinge = np.cross(v, u)
    hinge /= np.linalg.norm(hinge, axis=1, keepdims=True)
    r0, h0 = np.array([s, 0.0, 0.0]), np.array([0.0, -s, 0.0])  # rest bone direction and elbow hinge axis
    rest_frame = np.stack([r0, h0, np.cross(r0, h0)], 1)
    upper = np.stack([b1, hinge, np.cross(b1, hinge)], 2) @ rest_frame.T  # (T, 3, 3) global upper-arm rotation
    flex = np.arccos(np.clip(np.einsum("ti,ti->t", b1, b2), -1, 1))
    elbow_local = Rotation.from_rotvec(h0[None] * flex[:, None])
    forearm = upper @ elbow_local.as_matrix()
    wrist_local = Rotation.from_matrix(np.einsum("tji,tjk->tik", forearm, hand_rot))
    # swing-twist split about the forearm axis: the twist goes to the elbow (pronation / supination)
    q = wrist_local.as_quat()  # (x, y, z, w)
    proj = (q[:, :3] @ r0)[:, None] * r0
    twist_q = np.concatenate([proj, q[:, 3:]], 1)
    twist_q /= np.maximum(np.linalg.norm(twist_q, axis=1, keepdims=True), 1e-12)
    twist = Rotation.from_quat(twist_q)
    shoulder_local = Rotation.from_matrix(np.einsum("tji,tjk->tik", collar_rot, upper))
    return shoulder_local.as_rotvec(), (elbow_local * twist).as_rotvec(), (twist.inv() * wrist_local).as_rotvec()
