"""pose-format `.pose` files <-> signx tracks: `read_pose_file` fills the `mediapipe` and `dwpose` tracks from a file,
`write_pose_file` exports one of them so that pose-format's reader and visualiser open it.

Reading goes through pose-format's own reader (`Pose.read`), which knows versions 0.0, 0.1 and 0.2; anything else
(another version, bytes it cannot parse, a file without frames, a header of width or height 0, which leaves the
pixel coordinates impossible to normalise) is a `PoseFileError` naming the file and what is wrong.

Reading rules (components and points are found by NAME, never by position):

* Point format: pose-format keeps the last letter of a component's `format` (C, the confidence) apart, so the data
  of a point holds the other letters in order; x, y and z are the channels lettered X, Y and Z (XYZC: X, Y, Z;
  XYZKC: X, Y, Z, the K channel is ignored; XYC: no Z, so z = 0). A component without X or Y is refused.
* A point is *found* when its confidence is > 0 and finite and its x, y (and z) are finite. A point not found
  (confidence 0 or below, NaN or infinite numbers) reads as zeros.
* People: person 0 is read, the others are ignored (the layout says how many there were); a file with no person
  slot at all reads as frames with nothing detected.
* `mediapipe` (258 dims) from Holistic layouts (full 576, refined 586, without world landmarks 543 / 553,
  reduced 178, any of them in XYZC / XYZKC / XYC): POSE_LANDMARKS gives the 33 pose points (x / width,
  y / height, z as stored: pose-format stores MediaPipe's z unscaled; visibility = confidence);
  LEFT_HAND_LANDMARKS / RIGHT_HAND_LANDMARKS give the hands (x / width, y / height, z as stored; a hand whose
  points are all not found is not found: zeros). A pose point the component does not name (the reduced layout
  keeps 8: shoulders, elbows, wrists, hips) or a missing hand component reads as zeros. A frame is detected
  (mask True) when at least one pose point is found; a frame without one is all zeros, hands included (the
  track's rule: no pose, no frame). FACE_LANDMARKS and POSE_WORLD_LANDMARKS are ignored (the track has none).
  Hands without POSE_LANDMARKS (the hand-only layout) are refused, naming POSE_LANDMARKS: every frame would be
  undetected.
* `dwpose` (384 dims) from OpenPose layouts, x / width, y / height, score = confidence:
  OpenPose-137 (pose_keypoints_2d BODY_25, face_keypoints_2d 70, hand_left/right_keypoints_2d 21): the 18
  OpenPose-18 points by BODY_25 name (Nose, Neck, RShoulder, ...; BODY_25's own Neck is kept as the neck; MidHip
  and the 6 foot points are dropped), the first 68 face points (the iBUG order; the 2 pupils are dropped), and
  the hands' 21 points by name. OpenPose-135 (one BODY_135 component): the same body names, face the first 68 of
  its 70, each hand its body wrist (LWrist / RWrist) then its 20 finger points; BODY_135 has no neck, so the
  neck is made as DWPose makes it (`extractors.wholebody`): the shoulders' midpoint, scored by the weaker
  shoulder, present only when both exceed `NECK_VISIBLE`. A frame is detected when any of its 128 points is
  found. Face or hand components without a body component (pose_keypoints_2d / BODY_135) are refused.
* A file may fill both tracks; `PoseFile.tracks` holds only those it fills. A file that fills neither is refused,
  listing the components found and the ones expected.

Writing rules (`write_pose_file`, pose-format's API, the current version 0.2, written to `<path>.partial` and
then renamed over `path`): `mediapipe` -> POSE_LANDMARKS (33, XYZC, the point names and limbs of
`pose_format.utils.holistic`; x * width, y * height, z, confidence = visibility), LEFT_HAND_LANDMARKS and
RIGHT_HAND_LANDMARKS (21 each, XYZC; confidence 1 where the hand has a non-zero value, else 0). `dwpose` ->
OpenPose-137's four components (XYC, pose_format.utils.openpose's names, limbs and colours): BODY_25 from the 18
points by name, MidHip = the midpoint of the hips when both are present (score > 0; its confidence the weaker
hip's), the 6 foot points confidence 0; face 68 + the 2 pupils at confidence 0; the two hands. Frames without a
detection are written with confidence 0 everywhere.

Round trip: reading an exported file gives the track back (float32 precision) and the same mask. Confidence is
the only "found" flag a .pose file has, and MediaPipe gives every landmark of a found pose, so a pose landmark of
a detected frame whose visibility is exactly 0 (a point far outside the image) is written with the smallest
positive float32 confidence (`_PRESENT`) rather than 0, which would drop its coordinates; it reads back as a
visibility of 1.2e-38. A dwpose point with score 0 is undetected in the track itself (zeros), so nothing is lost
there.
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pose_format import Pose
from pose_format.numpy import NumPyPoseBody
from pose_format.pose_header import PoseHeader, PoseHeaderComponent, PoseHeaderDimensions
from pose_format.utils import openpose as op
from pose_format.utils import openpose_135 as op135

from extractors import dwpose, mediapipe
from extractors.base import TrackFrames
from extractors.wholebody import NECK_VISIBLE
from pipeline.layout import TRACKS

SUPPORTED_VERSIONS = (0.0, 0.1, 0.2)
WRITE_VERSION = 0.2  # what pose-format's writer writes

# pose_format.utils.holistic's names and limbs, spelled out: importing that module imports mediapipe.
HOLISTIC_BODY_POINTS: tuple[str, ...] = tuple(p.upper() for p in mediapipe.POSE33)
HOLISTIC_BODY_LIMBS: tuple[tuple[int, int], ...] = (
    (0, 1), (0, 4), (1, 2), (2, 3), (3, 7), (4, 5), (5, 6), (6, 8), (9, 10), (11, 12), (11, 13), (11, 23), (12, 14),
    (12, 24), (13, 15), (14, 16), (15, 17), (15, 19), (15, 21), (16, 18), (16, 20), (16, 22), (17, 19), (18, 20),
    (23, 24), (23, 25), (24, 26), (25, 27), (26, 28), (27, 29), (27, 31), (28, 30), (28, 32), (29, 31), (30, 32),
)  # fmt: skip
HOLISTIC_HAND_POINTS: tuple[str, ...] = (
    "WRIST", "THUMB_CMC", "THUMB_MCP", "THUMB_IP", "THUMB_TIP", "INDEX_FINGER_MCP", "INDEX_FINGER_PIP",
    "INDEX_FINGER_DIP", "INDEX_FINGER_TIP", "MIDDLE_FINGER_MCP", "MIDDLE_FINGER_PIP", "MIDDLE_FINGER_DIP",
    "MIDDLE_FINGER_TIP", "RING_FINGER_MCP", "RING_FINGER_PIP", "RING_FINGER_DIP", "RING_FINGER_TIP", "PINKY_MCP",
    "PINKY_PIP", "PINKY_DIP", "PINKY_TIP",
)  # fmt: skip
HOLISTIC_HAND_LIMBS: tuple[tuple[int, int], ...] = (
    (0, 1), (0, 5), (0, 17), (1, 2), (2, 3), (3, 4), (5, 6), (5, 9), (6, 7), (7, 8), (9, 10), (9, 13), (10, 11),
    (11, 12), (13, 14), (13, 17), (14, 15), (15, 16), (17, 18), (18, 19), (19, 20),
)  # fmt: skip
HOLISTIC_BODY_COLORS = ((255, 0, 0),)
HOLISTIC_HANDS = ("LEFT_HAND_LANDMARKS", "RIGHT_HAND_LANDMARKS")
HOLISTIC_COMPONENTS = ("POSE_LANDMARKS", "FACE_LANDMARKS", *HOLISTIC_HANDS, "POSE_WORLD_LANDMARKS")

# OpenPose names of extractors.dwpose.OPENPOSE18, in its order (BODY_25 and BODY_135 share them).
OPENPOSE18_NAMES: tuple[str, ...] = (
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "RHip", "RKnee", "RAnkle",
    "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar",
)  # fmt: skip
OPENPOSE137_BODY, OPENPOSE135_BODY = "pose_keypoints_2d", "BODY_135"
OPENPOSE137_COMPONENTS = tuple(c.name for c in op.OpenPose_Components)
# Per dwpose part (body, face, left hand, right hand): (component, point names) of each OpenPose layout.
_OPENPOSE137_SOURCES = (
    (OPENPOSE137_BODY, OPENPOSE18_NAMES),
    ("face_keypoints_2d", tuple(op.FACE_POINTS[:68])),
    ("hand_left_keypoints_2d", tuple(op.HAND_POINTS)),
    ("hand_right_keypoints_2d", tuple(op.HAND_POINTS)),
)
_OPENPOSE135_SOURCES = (
    (OPENPOSE135_BODY, OPENPOSE18_NAMES),
    (OPENPOSE135_BODY, tuple(op135.FACE_POINTS[:68])),
    (OPENPOSE135_BODY, ("LWrist", *op135.LEFT_HAND_POINTS)),
    (OPENPOSE135_BODY, ("RWrist", *op135.RIGHT_HAND_POINTS)),
)
_READ = (*HOLISTIC_COMPONENTS[:1], *HOLISTIC_HANDS, *OPENPOSE137_COMPONENTS, OPENPOSE135_BODY)


class PoseFileError(ValueError):
    """A .pose file signx cannot read (or write): the message names the file and what is missing or wrong."""


@dataclass(frozen=True)
class PoseFile:
    """What a .pose file gives signx: its timing and size, and the tracks it fills (`n_frames` frames each)."""

    fps: float
    width: int
    height: int
    n_frames: int
    tracks: dict[str, TrackFrames]
    layout: str  # e.g. "holistic-576 XYZC v0.2", "openpose-137 XYC v0.1"


@dataclass(frozen=True)
class _Component:
    """One component of person 0: `xyz` (T, N, 3) in the file's units and `conf` (T, N), both 0 where a point is
    not found (so a point is found exactly where `conf` > 0)."""

    points: tuple[str, ...]
    xyz: np.ndarray
    conf: np.ndarray

    def take(self, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        """(xyz (T, k, 3), conf (T, k)) of the named points, in that order; a name the component lacks is zeros."""
        index: dict[str, int] = {}
        for i, p in enumerate(self.points):
            index.setdefault(p, i)
        t = len(self.xyz)
        xyz, conf = np.zeros((t, len(names), 3)), np.zeros((t, len(names)))
        for k, name in enumerate(names):
            if name in index:
                xyz[:, k], conf[:, k] = self.xyz[:, index[name]], self.conf[:, index[name]]
        return xyz, conf


def read_pose_file(path: str | os.PathLike) -> PoseFile:
    """Read a pose-format file (any version pose-format reads) into the signx tracks it fills (module docstring)."""
    path = Path(path)
    buffer = path.read_bytes()
    version = _check_version(path, buffer)
    try:
        pose = Pose.read(buffer)
    except Exception as e:  # pose-format raises whatever its parsing of bad bytes runs into
        raise PoseFileError(f"{path}: not a readable pose-format v{version:.1f} file ({type(e).__name__}: {e})") from e
    data, conf, people = _person0(path, pose)
    if len(data) == 0:
        raise PoseFileError(f"{path}: the file has 0 frames")
    width, height = int(pose.header.dimensions.width), int(pose.header.dimensions.height)
    if width <= 0 or height <= 0:
        raise PoseFileError(
            f"{path}: header width {width} / height {height}: a dimension of 0 leaves the pixel coordinates "
            "impossible to normalise"
        )
    comps = _components(path, pose.header, data, conf)
    tracks = _tracks(path, pose.header, comps, width, height)
    return PoseFile(
        fps=float(pose.body.fps),
        width=width,
        height=height,
        n_frames=len(data),
        tracks=tracks,
        layout=_layout(pose.header, version, people),
    )


def _check_version(path: Path, buffer: bytes) -> float:
    """The file's version (its first float), refused unless pose-format reads it."""
    if len(buffer) < 4:
        raise PoseFileError(f"{path}: {len(buffer)} bytes, too short for a pose-format header (no version)")
    (version,) = struct.unpack_from("<f", buffer)
    if not (version == 0 or round(version, 3) in SUPPORTED_VERSIONS[1:]):  # pose-format's own test
        supported = ", ".join(f"{v:.1f}" for v in SUPPORTED_VERSIONS)
        raise PoseFileError(f"{path}: pose-format version {version:g} is not supported (pose-format reads {supported})")
    return version


def _person0(path: Path, pose: Pose) -> tuple[np.ndarray, np.ndarray, int]:
    """(data (T, N, D), confidence (T, N)) of person 0, as stored (masked points included), and the people count;
    zeros when the file has no person slot."""
    data = np.ma.getdata(pose.body.data)
    conf = np.ma.getdata(pose.body.confidence)
    if data.ndim != 4 or conf.shape != data.shape[:3] or data.shape[2] != pose.header.total_points():
        raise PoseFileError(f"{path}: body of shape {data.shape} / confidence {conf.shape} does not match its header")
    frames, people, points, dims = data.shape
    if people == 0:
        return np.zeros((frames, points, dims), np.float32), np.zeros((frames, points), np.float32), 0
    return data[:, 0], conf[:, 0], people


def _components(path: Path, header: PoseHeader, data: np.ndarray, conf: np.ndarray) -> dict[str, _Component]:
    """The components signx reads, by name (the first of a repeated name), with their points found or zeroed."""
    out: dict[str, _Component] = {}
    start = 0
    for comp in header.components:
        n = len(comp.points)
        if comp.name in _READ and comp.name not in out:
            out[comp.name] = _component(path, comp, data[:, start : start + n], conf[:, start : start + n])
        start += n
    return out


def _component(path: Path, comp: PoseHeaderComponent, data: np.ndarray, conf: np.ndarray) -> _Component:
    """x, y, z by the letters of the component's format (its last letter is the confidence, kept apart)."""
    channels = comp.format[:-1].upper()
    if "X" not in channels or "Y" not in channels:
        raise PoseFileError(f"{path}: component {comp.name} has point format {comp.format!r}, without X and Y")
    xyz = np.zeros((*data.shape[:2], 3))
    for k, letter in enumerate("XYZ"):
        if letter in channels:
            xyz[..., k] = data[..., channels.index(letter)]
    c = np.asarray(conf, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        found = (c > 0) & np.isfinite(c) & np.isfinite(xyz).all(-1)
    return _Component(tuple(comp.points), np.where(found[..., None], xyz, 0.0), np.where(found, c, 0.0))


def _tracks(
    path: Path, header: PoseHeader, comps: dict[str, _Component], width: int, height: int
) -> dict[str, TrackFrames]:
    """The tracks the components fill; refused (naming what is missing) when they fill none."""
    tracks = {}
    if "POSE_LANDMARKS" in comps:
        tracks["mediapipe"] = _mediapipe_track(comps, width, height)
    if OPENPOSE137_BODY in comps or OPENPOSE135_BODY in comps:
        tracks["dwpose"] = _dwpose_track(comps, width, height)
    if tracks:
        return tracks
    found = [c.name for c in header.components]
    expected = (
        "POSE_LANDMARKS (+ LEFT_HAND_LANDMARKS, RIGHT_HAND_LANDMARKS) for the mediapipe track; "
        f"{OPENPOSE137_BODY} (+ {', '.join(OPENPOSE137_COMPONENTS[1:])}) or {OPENPOSE135_BODY} for the dwpose track"
    )
    missing = ""
    if any(h in comps for h in HOLISTIC_HANDS):
        missing = "Holistic hands without POSE_LANDMARKS (a frame without the pose is undetected); "
    elif any(c in comps for c in OPENPOSE137_COMPONENTS):
        missing = f"OpenPose face / hands without {OPENPOSE137_BODY}; "
    raise PoseFileError(f"{path}: {missing}no signx track to fill: components found {found}, expected {expected}")


def _mediapipe_track(comps: dict[str, _Component], width: int, height: int) -> TrackFrames:
    """Holistic components -> the 258-dim track (module docstring)."""
    xyz, vis = comps["POSE_LANDMARKS"].take(HOLISTIC_BODY_POINTS)
    t = len(xyz)
    mask = (vis > 0).any(1)
    scale = np.array([width, height, 1.0])
    parts = [np.concatenate([xyz / scale, vis[..., None]], -1)]
    for name in HOLISTIC_HANDS:
        hand = comps[name].take(HOLISTIC_HAND_POINTS)[0] / scale if name in comps else np.zeros((t, 21, 3))
        parts.append(hand)
    values = np.concatenate([p.reshape(t, -1) for p in parts], 1)
    values = np.where(mask[:, None], values, 0.0).astype(np.float32)
    return TrackFrames(values, mask)


def _dwpose_track(comps: dict[str, _Component], width: int, height: int) -> TrackFrames:
    """OpenPose-137 / -135 components -> the 384-dim track (module docstring)."""
    body = OPENPOSE137_BODY if OPENPOSE137_BODY in comps else OPENPOSE135_BODY
    sources = _OPENPOSE137_SOURCES if body == OPENPOSE137_BODY else _OPENPOSE135_SOURCES
    t = len(comps[body].xyz)
    parts = []
    for name, points in sources:
        if name not in comps:
            parts.append(np.zeros((t, len(points), 3)))
            continue
        xyz, conf = comps[name].take(points)
        parts.append(np.concatenate([xyz[..., :1] / width, xyz[..., 1:2] / height, conf[..., None]], -1))
    kp = np.concatenate(parts, 1)  # (T, 128, 3)
    if "Neck" not in comps[body].points:
        kp[:, 1] = _shoulder_neck(kp)
    mask = (kp[..., 2] > 0).any(1)
    return TrackFrames(kp.reshape(t, 384).astype(np.float32), mask)


def _shoulder_neck(kp: np.ndarray) -> np.ndarray:
    """(T, 3) neck of OpenPose-18 points (T, 18+, 3) as DWPose makes it (`extractors.wholebody.to_track_points`)."""
    shoulders = kp[:, [2, 5]]  # right_shoulder, left_shoulder
    neck = np.concatenate([shoulders[..., :2].mean(1), shoulders[..., 2].min(1, keepdims=True)], 1)
    return np.where((shoulders[..., 2] > NECK_VISIBLE).all(1)[:, None], neck, 0.0)


def _layout(header: PoseHeader, version: float, people: int) -> str:
    """Words for the file's layout, e.g. "holistic-576 XYZC v0.2" or "openpose-137 XYC v0.1, 2 people"."""
    names = {c.name for c in header.components}
    if names & set(HOLISTIC_COMPONENTS):
        family = "holistic"
    elif names & {*OPENPOSE137_COMPONENTS, OPENPOSE135_BODY}:
        family = "openpose"
    else:
        family = "pose"
    formats = "/".join(dict.fromkeys(c.format for c in header.components))
    text = f"{family}-{header.total_points()} {formats} v{version:.1f}"
    if people == 0:
        return f"{text}, no people"
    return text if people == 1 else f"{text}, {people} people (person 0 read)"


def write_pose_file(
    path: str | os.PathLike, track: str, frames: TrackFrames, fps: float, width: int, height: int
) -> None:
    """Export a `mediapipe` or `dwpose` track as a pose-format file (version 0.2; module docstring), atomically."""
    path = Path(path)
    _check_export(path, track, frames, fps, width, height)
    if track == "mediapipe":
        components, data, conf = _holistic_export(frames, width, height)
    else:
        components, data, conf = _openpose_export(frames, width, height)
    header = PoseHeader(WRITE_VERSION, PoseHeaderDimensions(width, height, 0), components)
    body = NumPyPoseBody(
        fps=float(fps), data=data[:, None].astype(np.float32), confidence=conf[:, None].astype(np.float32)
    )
    partial = path.with_name(path.name + ".partial")
    try:
        with open(partial, "wb") as f:
            Pose(header, body).write(f)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _check_export(path: Path, track: str, frames: TrackFrames, fps: float, width: int, height: int) -> None:
    if track not in ("mediapipe", "dwpose"):
        raise PoseFileError(f"{path}: only the mediapipe and dwpose tracks become .pose files, not {track!r}")
    if frames.values.shape[1:] != (TRACKS[track],) or len(frames.values) == 0:
        want = f"(T >= 1, {TRACKS[track]})"
        raise PoseFileError(f"{path}: a {track} track needs {want} values, got {frames.values.shape}")
    for name, size in (("width", width), ("height", height)):
        if not (isinstance(size, int | np.integer) and 0 < size <= 0xFFFF):
            raise PoseFileError(f"{path}: {name} {size!r} is not an image size (1 .. 65535 pixels)")
    if not (math.isfinite(fps) and fps > 0):
        raise PoseFileError(f"{path}: fps {fps!r} is not a frame rate")


_PRESENT = float(np.finfo(np.float32).tiny)  # the confidence of a present pose landmark of visibility 0


def _holistic_export(frames: TrackFrames, width: int, height: int) -> tuple[list, np.ndarray, np.ndarray]:
    """mediapipe track -> (components, data (T, 75, 3) pixels, confidence (T, 75))."""
    values = frames.values.astype(np.float64)
    t = len(values)
    pose = values[:, mediapipe.POSE].reshape(t, 33, 4)
    hands = [values[:, part].reshape(t, 21, 3) for part in (mediapipe.LEFT_HAND, mediapipe.RIGHT_HAND)]
    scale = np.array([width, height, 1.0])
    data = np.concatenate([pose[..., :3] * scale] + [hand * scale for hand in hands], 1)
    hand_conf = [np.repeat((hand != 0).any((1, 2))[:, None], 21, 1).astype(np.float64) for hand in hands]
    visibility = np.maximum(pose[..., 3], _PRESENT)  # every landmark of a found pose is present (module docstring)
    conf = np.concatenate([visibility, *hand_conf], 1) * frames.mask[:, None]
    body = PoseHeaderComponent(
        "POSE_LANDMARKS", list(HOLISTIC_BODY_POINTS), list(HOLISTIC_BODY_LIMBS), list(HOLISTIC_BODY_COLORS), "XYZC"
    )
    components = [body] + [
        PoseHeaderComponent(name, list(HOLISTIC_HAND_POINTS), list(HOLISTIC_HAND_LIMBS), list(op.hand_colors), "XYZC")
        for name in HOLISTIC_HANDS
    ]
    return components, data, conf


def _openpose_export(frames: TrackFrames, width: int, height: int) -> tuple[list, np.ndarray, np.ndarray]:
    """dwpose track -> (OpenPose-137 components, data (T, 137, 2) pixels, confidence (T, 137))."""
    kp = frames.values.astype(np.float64).reshape(len(frames.values), 128, 3)
    kp[..., 0] *= width
    kp[..., 1] *= height
    body25 = np.zeros((len(kp), len(op.BODY_POINTS), 3))
    for i, name in enumerate(OPENPOSE18_NAMES):
        body25[:, op.BODY_POINTS.index(name)] = kp[:, i]
    rhip, lhip = kp[:, OPENPOSE18_NAMES.index("RHip")], kp[:, OPENPOSE18_NAMES.index("LHip")]
    mid = np.concatenate([(rhip[:, :2] + lhip[:, :2]) / 2, np.minimum(rhip[:, 2:], lhip[:, 2:])], 1)
    both = (rhip[:, 2] > 0) & (lhip[:, 2] > 0)
    body25[:, op.BODY_POINTS.index("MidHip")] = np.where(both[:, None], mid, 0.0)
    face = np.concatenate([kp[:, dwpose.FACE], np.zeros((len(kp), 2, 3))], 1)  # + the 2 pupils, not found
    points = np.concatenate([body25, face, kp[:, dwpose.LEFT_HAND], kp[:, dwpose.RIGHT_HAND]], 1)
    components = [
        PoseHeaderComponent(c.name, list(c.points), list(c.limbs), list(c.colors), c.format)
        for c in op.OpenPose_Components
    ]
    return components, points[..., :2], points[..., 2] * frames.mask[:, None]
