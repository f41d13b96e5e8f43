"""pipeline.posefile: pose-format files of every version and layout signx reads, and the export's round trip.

Fixtures are written with pose-format's own API (PoseHeader, NumPyPoseBody, Pose.write, its Holistic / OpenPose
components); versions 0.1 and 0.0, which its writer no longer produces, are written byte by byte as its reader
reads them, and opened with `Pose.read` before signx reads them.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
from pose_format import Pose
from pose_format.numpy import NumPyPoseBody
from pose_format.pose_header import PoseHeader, PoseHeaderDimensions
from pose_format.utils import openpose as op
from pose_format.utils import openpose_135 as op135

from extractors import dwpose, mediapipe
from extractors.base import TrackFrames
from pipeline import posefile
from pipeline.posefile import PoseFileError, read_pose_file, write_pose_file

MP = {name: i for i, name in enumerate(mediapipe.LAYOUT.dim_names)}
DW = {name: i for i, name in enumerate(dwpose.LAYOUT.dim_names)}


def holistic_components(fmt: str = "XYZC", face_extra: int = 0, world: bool = True) -> list:
    """pose-format's own Holistic components (its module imports mediapipe, a signx requirement)."""
    holistic = pytest.importorskip("pose_format.utils.holistic")
    comps = holistic.holistic_components(fmt, face_extra)
    return comps if world else comps[:-1]


def make_pose(components: list, frames: int, width: int = 128, height: int = 128, people: int = 1) -> Pose:
    header = PoseHeader(0.2, PoseHeaderDimensions(width, height, 0), components)
    data = np.zeros((frames, people, header.total_points(), header.num_dims()), np.float32)
    conf = np.zeros((frames, people, header.total_points()), np.float32)
    return Pose(header, NumPyPoseBody(25.0, data, conf))


def plant(pose: Pose, component: str, point: str, frame: int, xyz: tuple, conf: float, person: int = 0) -> None:
    """Set one point's stored numbers (pixels, as pose-format stores them) and confidence."""
    i = pose.header.get_point_index(component, point)
    pose.body.data.data[frame, person, i, : len(xyz)] = xyz
    pose.body.confidence[frame, person, i] = conf


def save(pose: Pose, path) -> str:
    with open(path, "wb") as f:
        pose.write(f)
    return str(path)


def header_bytes(pose: Pose, version: float) -> bytes:
    """pose-format's header bytes (the same in every version) with `version` in place of the writer's 0.2."""
    buf = io.BytesIO()
    pose.header.write(buf)
    return struct.pack("<f", version) + buf.getvalue()[4:]


def v01_bytes(pose: Pose) -> bytes:
    """Version 0.1 (docs/specs/v0.1.md, PoseBody.read_v0_1): uint16 fps, frames, people; then every frame's
    float32 data (frames, people, points, dims), then every frame's float32 confidence."""
    data = np.asarray(pose.body.data.data, "<f4")
    conf = np.asarray(pose.body.confidence, "<f4")
    body = struct.pack("<HHH", int(pose.body.fps), data.shape[0], data.shape[1]) + data.tobytes() + conf.tobytes()
    return header_bytes(pose, 0.1) + body


def v00_bytes(pose: Pose) -> bytes:
    """Version 0.0 (NumPyPoseBody.read_v0_0): uint16 fps, frames; per frame uint16 people; per person an int16 id
    and, per component, its points' float32 numbers with the confidence last (len(format) per point)."""
    data, conf = np.asarray(pose.body.data.data), np.asarray(pose.body.confidence)
    out = [header_bytes(pose, 0.0), struct.pack("<HH", int(pose.body.fps), data.shape[0])]
    for f in range(data.shape[0]):
        out.append(struct.pack("<H", data.shape[1]))
        for p in range(data.shape[1]):
            out.append(struct.pack("<h", p))
            start = 0
            for c in pose.header.components:
                n = len(c.points)
                numbers = data[f, p, start : start + n, : len(c.format) - 1]
                block = np.concatenate([numbers, conf[f, p, start : start + n, None]], 1)
                out.append(block.astype("<f4").tobytes())
                start += n
    return b"".join(out)


def test_holistic_names_match_pose_format():
    holistic = pytest.importorskip("pose_format.utils.holistic")
    assert list(posefile.HOLISTIC_BODY_POINTS) == list(holistic.BODY_POINTS)
    assert list(posefile.HOLISTIC_HAND_POINTS) == list(holistic.HAND_POINTS)
    assert set(posefile.HOLISTIC_BODY_LIMBS) == set(holistic.BODY_LIMBS)
    assert set(posefile.HOLISTIC_HAND_LIMBS) == set(holistic.HAND_LIMBS)


@pytest.mark.parametrize(
    ("face_extra", "world", "total"), [(0, True, 576), (10, True, 586), (0, False, 543), (10, False, 553)]
)
def test_holistic_layouts(tmp_path, face_extra, world, total):
    pose = make_pose(holistic_components("XYZC", face_extra, world), 3)
    assert pose.header.total_points() == total
    plant(pose, "POSE_LANDMARKS", "LEFT_WRIST", 0, (64, 32, -0.25), 0.9)
    plant(pose, "POSE_LANDMARKS", "NOSE", 0, (16, 96, 0.5), 0.7)
    plant(pose, "LEFT_HAND_LANDMARKS", "WRIST", 0, (32, 64, 0.125), 1.0)
    plant(pose, "FACE_LANDMARKS", "1", 0, (10, 10, 10), 1.0)  # ignored
    if world:
        plant(pose, "POSE_WORLD_LANDMARKS", "LEFT_WRIST", 0, (0.1, 0.2, 0.3), 1.0)  # ignored
    plant(pose, "LEFT_HAND_LANDMARKS", "WRIST", 1, (32, 64, 0.125), 1.0)  # a hand without a pose: not a frame
    plant(pose, "POSE_LANDMARKS", "RIGHT_SHOULDER", 2, (128, 128, 0.0), 0.5)
    pf = read_pose_file(save(pose, tmp_path / "h.pose"))
    assert (pf.layout, pf.n_frames, pf.width, pf.height, pf.fps) == (f"holistic-{total} XYZC v0.2", 3, 128, 128, 25.0)
    assert set(pf.tracks) == {"mediapipe"}
    v, mask = pf.tracks["mediapipe"].values, pf.tracks["mediapipe"].mask
    assert mask.tolist() == [True, False, True]
    for field, want in zip("x y z visibility".split(), (0.5, 0.25, -0.25, 0.9)):
        assert v[0, MP[f"mediapipe.pose.left_wrist.{field}"]] == pytest.approx(want)
    assert v[0, MP["mediapipe.pose.nose.y"]] == pytest.approx(0.75)
    assert v[0, [MP[f"mediapipe.left_hand.wrist.{f}"] for f in "xyz"]] == pytest.approx([0.25, 0.5, 0.125])
    assert np.count_nonzero(v[0]) == 11  # 2 pose points x 4 + 1 hand point x 3: face and world add nothing
    assert not v[1].any()
    assert v[2, MP["mediapipe.pose.right_shoulder.x"]] == pytest.approx(1.0)


def test_reduced_holistic_fills_the_named_pose_points(tmp_path):
    from pose_format.utils.generic import reduce_holistic

    pose = make_pose(holistic_components("XYZC", 10), 1)
    plant(pose, "POSE_LANDMARKS", "LEFT_WRIST", 0, (64, 32, -0.25), 0.9)
    plant(pose, "POSE_LANDMARKS", "NOSE", 0, (16, 96, 0.5), 0.7)  # not one of the reduced layout's 8
    plant(pose, "RIGHT_HAND_LANDMARKS", "PINKY_TIP", 0, (96, 16, 0.0), 1.0)
    reduced = reduce_holistic(pose)
    assert reduced.header.total_points() == 178
    assert len(reduced.header.components[0].points) == 8
    pf = read_pose_file(save(reduced, tmp_path / "r.pose"))
    assert pf.layout == "holistic-178 XYZC v0.2"
    v = pf.tracks["mediapipe"].values[0]
    assert pf.tracks["mediapipe"].mask.tolist() == [True]
    assert (v[MP["mediapipe.pose.left_wrist.x"]], v[MP["mediapipe.pose.left_wrist.y"]]) == pytest.approx((0.5, 0.25))
    assert v[[MP[f"mediapipe.pose.nose.{f}"] for f in ("x", "y", "z", "visibility")]].tolist() == [0, 0, 0, 0]
    assert v[MP["mediapipe.right_hand.pinky_tip.x"]] == pytest.approx(0.75)


def test_hand_only_file_is_refused(tmp_path):
    comps = [c for c in holistic_components() if c.name == "RIGHT_HAND_LANDMARKS"]
    pose = make_pose(comps, 2)
    plant(pose, "RIGHT_HAND_LANDMARKS", "WRIST", 0, (10, 10, 0), 1.0)
    path = save(pose, tmp_path / "hand.pose")
    with pytest.raises(PoseFileError, match="POSE_LANDMARKS") as err:
        read_pose_file(path)
    assert "hand.pose" in str(err.value) and "RIGHT_HAND_LANDMARKS" in str(err.value)


def test_file_without_a_signx_component_is_refused(tmp_path):
    pose = make_pose([c for c in holistic_components() if c.name == "FACE_LANDMARKS"], 1)
    with pytest.raises(PoseFileError, match=r"found \['FACE_LANDMARKS'\].*pose_keypoints_2d"):
        read_pose_file(save(pose, tmp_path / "face.pose"))


def test_openpose_137(tmp_path):
    pose = make_pose(op.OpenPose_Components, 2, width=200, height=100)
    plant(pose, "pose_keypoints_2d", "Neck", 0, (100, 50), 0.9)
    plant(pose, "pose_keypoints_2d", "RWrist", 0, (50, 25), 0.8)
    plant(pose, "pose_keypoints_2d", "MidHip", 0, (10, 10), 1.0)  # dropped
    plant(pose, "pose_keypoints_2d", "LBigToe", 0, (20, 20), 1.0)  # dropped
    plant(pose, "face_keypoints_2d", "FLO_48", 0, (40, 60), 0.6)
    plant(pose, "face_keypoints_2d", "FP_68", 0, (7, 7), 1.0)  # a pupil: dropped
    plant(pose, "hand_left_keypoints_2d", "BASE", 0, (150, 75), 0.4)
    plant(pose, "hand_right_keypoints_2d", "P_DIP", 0, (200, 100), 0.3)
    pf = read_pose_file(save(pose, tmp_path / "op.pose"))
    assert pf.layout == "openpose-137 XYC v0.2" and set(pf.tracks) == {"dwpose"}
    v, mask = pf.tracks["dwpose"].values, pf.tracks["dwpose"].mask
    assert mask.tolist() == [True, False]
    expect = {
        "body.neck": (0.5, 0.5, 0.9),
        "body.right_wrist": (0.25, 0.25, 0.8),
        "face.48": (0.2, 0.6, 0.6),
        "left_hand.wrist": (0.75, 0.75, 0.4),
        "right_hand.pinky_tip": (1.0, 1.0, 0.3),
    }
    for point, want in expect.items():
        assert v[0, [DW[f"dwpose.{point}.{f}"] for f in ("x", "y", "score")]] == pytest.approx(want)
    assert np.count_nonzero(v[0]) == 15 and not v[1].any()


def test_openpose_135(tmp_path):
    pose = make_pose(op135.OpenPose_Components, 2, width=100, height=100)
    for frame, right_score in ((0, 0.5), (1, 0.2)):
        plant(pose, "BODY_135", "LShoulder", frame, (60, 40), 0.9)
        plant(pose, "BODY_135", "RShoulder", frame, (40, 40), right_score)
    plant(pose, "BODY_135", "LWrist", 0, (80, 80), 0.7)
    plant(pose, "BODY_135", "LThumb1CMC", 0, (90, 70), 0.6)
    plant(pose, "BODY_135", "LPupil", 0, (5, 5), 1.0)  # dropped
    pf = read_pose_file(save(pose, tmp_path / "op135.pose"))
    assert pf.layout == "openpose-135 XYC v0.2"
    v = pf.tracks["dwpose"].values

    def point(frame: int, name: str) -> list:
        return v[frame, [DW[f"dwpose.{name}.{f}"] for f in ("x", "y", "score")]].tolist()

    assert point(0, "body.neck") == pytest.approx([0.5, 0.4, 0.5])  # the shoulders' midpoint, the weaker score
    assert point(1, "body.neck") == [0, 0, 0]  # a shoulder under DWPose's 0.3
    assert point(0, "body.left_wrist") == point(0, "left_hand.wrist") == pytest.approx([0.8, 0.8, 0.7])
    assert point(0, "left_hand.thumb_cmc") == pytest.approx([0.9, 0.7, 0.6])
    assert np.count_nonzero(v[0]) == 6 * 3  # the two shoulders, neck, wrist twice, thumb


@pytest.mark.parametrize(("fmt", "z"), [("XYZKC", -0.25), ("XYC", 0.0)])
def test_point_formats(tmp_path, fmt, z):
    pose = make_pose(holistic_components(fmt), 1)
    assert pose.header.num_dims() == len(fmt) - 1
    plant(pose, "POSE_LANDMARKS", "LEFT_WRIST", 0, (64, 32, -0.25, 777.0)[: len(fmt) - 1], 0.9)
    pf = read_pose_file(save(pose, tmp_path / "f.pose"))
    assert pf.layout == f"holistic-576 {fmt} v0.2"
    v = pf.tracks["mediapipe"].values[0]
    got = [v[MP[f"mediapipe.pose.left_wrist.{f}"]] for f in ("x", "y", "z", "visibility")]
    assert got == pytest.approx([0.5, 0.25, z, 0.9])


def test_nan_and_confidence_zero_points_read_as_zeros(tmp_path):
    pose = make_pose(holistic_components(), 2)
    plant(pose, "POSE_LANDMARKS", "NOSE", 0, (64, 32, 0.1), 0.5)
    plant(pose, "POSE_LANDMARKS", "LEFT_WRIST", 0, (np.nan, 32, 0.1), 1.0)
    plant(pose, "POSE_LANDMARKS", "LEFT_SHOULDER", 0, (64, 32, np.inf), 1.0)
    plant(pose, "POSE_LANDMARKS", "RIGHT_WRIST", 0, (10, 10, 0.1), 0.0)
    plant(pose, "POSE_LANDMARKS", "RIGHT_ELBOW", 0, (10, 10, 0.1), np.nan)
    for p in posefile.HOLISTIC_HAND_POINTS:
        plant(pose, "LEFT_HAND_LANDMARKS", p, 0, (5, 5, 5), 0.0)  # a hand that is not found
    plant(pose, "RIGHT_HAND_LANDMARKS", "WRIST", 0, (np.nan, np.nan, np.nan), 1.0)
    plant(pose, "RIGHT_HAND_LANDMARKS", "THUMB_CMC", 0, (64, 64, 0.0), 1.0)
    for p in posefile.HOLISTIC_BODY_POINTS:
        plant(pose, "POSE_LANDMARKS", p, 1, (np.nan, 1, 1), 1.0)  # no usable pose point: not detected
    pf = read_pose_file(save(pose, tmp_path / "nan.pose"))
    v, mask = pf.tracks["mediapipe"].values, pf.tracks["mediapipe"].mask
    assert mask.tolist() == [True, False] and np.isfinite(v).all() and not v[1].any()
    for name in ("left_wrist", "left_shoulder", "right_wrist", "right_elbow"):
        assert not v[0, [MP[f"mediapipe.pose.{name}.{f}"] for f in ("x", "y", "z", "visibility")]].any()
    assert v[0, MP["mediapipe.pose.nose.visibility"]] == pytest.approx(0.5)
    assert not v[0, mediapipe.LEFT_HAND].any()
    assert v[0, MP["mediapipe.right_hand.thumb_cmc.x"]] == pytest.approx(0.5)
    assert np.count_nonzero(v[0]) == 4 + 2  # the nose, and the right thumb's x and y


def test_zero_frames_are_refused(tmp_path):
    path = save(make_pose(op.OpenPose_Components, 0), tmp_path / "empty.pose")
    assert len(Pose.read(Path(path).read_bytes()).body.data) == 0
    with pytest.raises(PoseFileError, match="empty.pose.*0 frames"):
        read_pose_file(path)


def test_unknown_version_is_refused(tmp_path):
    path = tmp_path / "v03.pose"
    raw = bytearray(Path(save(make_pose(op.OpenPose_Components, 1), path)).read_bytes())
    raw[:4] = struct.pack("<f", 0.3)
    path.write_bytes(bytes(raw))
    with pytest.raises(PoseFileError, match=r"v03.pose: pose-format version 0\.3 is not supported"):
        read_pose_file(path)


@pytest.mark.parametrize("cut", [3, 40, -7])
def test_unreadable_bytes_are_refused(tmp_path, cut):
    pose = make_pose(op.OpenPose_Components, 2)
    plant(pose, "pose_keypoints_2d", "Nose", 0, (1, 1), 1.0)
    path = tmp_path / "cut.pose"
    path.write_bytes(Path(save(pose, path)).read_bytes()[:cut])
    with pytest.raises(PoseFileError, match="cut.pose"):
        read_pose_file(path)


def test_width_zero_is_refused(tmp_path):
    pose = make_pose(op.OpenPose_Components, 1, width=0, height=100)
    plant(pose, "pose_keypoints_2d", "Nose", 0, (1, 1), 1.0)
    with pytest.raises(PoseFileError, match="width 0"):
        read_pose_file(save(pose, tmp_path / "w0.pose"))


def test_two_people_reads_person_0(tmp_path):
    pose = make_pose(op.OpenPose_Components, 1, width=200, height=100, people=2)
    plant(pose, "pose_keypoints_2d", "RWrist", 0, (50, 25), 0.8, person=0)
    plant(pose, "pose_keypoints_2d", "RWrist", 0, (150, 75), 0.9, person=1)
    plant(pose, "pose_keypoints_2d", "Nose", 0, (100, 50), 0.9, person=1)
    pf = read_pose_file(save(pose, tmp_path / "two.pose"))
    assert pf.layout == "openpose-137 XYC v0.2, 2 people (person 0 read)"
    v = pf.tracks["dwpose"].values[0]
    assert v[[DW[f"dwpose.body.right_wrist.{f}"] for f in ("x", "y", "score")]] == pytest.approx([0.25, 0.25, 0.8])
    assert np.count_nonzero(v) == 3


def test_holistic_and_openpose_in_one_file_fill_both_tracks(tmp_path):
    comps = holistic_components()[:1] + op.OpenPose_Components[:1]
    pose = make_pose(comps, 1)
    assert pose.header.num_dims() == 3  # the XYC component's third channel is padding
    plant(pose, "POSE_LANDMARKS", "LEFT_WRIST", 0, (64, 32, -0.25), 0.9)
    plant(pose, "pose_keypoints_2d", "LWrist", 0, (32, 64, 99.0), 0.8)
    pf = read_pose_file(save(pose, tmp_path / "both.pose"))
    assert pf.layout == "holistic-58 XYZC/XYC v0.2" and set(pf.tracks) == {"mediapipe", "dwpose"}
    assert pf.tracks["mediapipe"].values[0, MP["mediapipe.pose.left_wrist.x"]] == pytest.approx(0.5)
    dw = pf.tracks["dwpose"].values[0]
    assert dw[[DW[f"dwpose.body.left_wrist.{f}"] for f in ("x", "y", "score")]] == pytest.approx([0.25, 0.5, 0.8])


def test_version_0_1_bytes(tmp_path):
    pose = make_pose(holistic_components(), 2)
    plant(pose, "POSE_LANDMARKS", "LEFT_WRIST", 0, (64, 32, -0.25), 0.9)
    plant(pose, "RIGHT_HAND_LANDMARKS", "INDEX_FINGER_TIP", 0, (32, 96, 0.5), 1.0)
    raw = v01_bytes(pose)
    opened = Pose.read(raw)  # pose-format's own reader opens the fixture
    assert round(opened.header.version, 3) == 0.1 and opened.body.data.shape == (2, 1, 576, 3)
    np.testing.assert_array_equal(np.ma.getdata(opened.body.data), pose.body.data.data)
    path = tmp_path / "v01.pose"
    path.write_bytes(raw)
    pf = read_pose_file(path)
    assert (pf.layout, pf.fps, pf.n_frames) == ("holistic-576 XYZC v0.1", 25.0, 2)
    v = pf.tracks["mediapipe"].values
    assert v[0, MP["mediapipe.pose.left_wrist.y"]] == pytest.approx(0.25)
    assert v[0, MP["mediapipe.right_hand.index_tip.z"]] == pytest.approx(0.5)
    assert pf.tracks["mediapipe"].mask.tolist() == [True, False]
    np.testing.assert_array_equal(v, read_pose_file(save(pose, tmp_path / "v02.pose")).tracks["mediapipe"].values)


def test_version_0_0_bytes(tmp_path):
    pose = make_pose(op.OpenPose_Components, 2, width=200, height=100)
    plant(pose, "pose_keypoints_2d", "RWrist", 0, (50, 25), 0.8)
    plant(pose, "hand_right_keypoints_2d", "BASE", 1, (100, 50), 0.5)
    raw = v00_bytes(pose)
    opened = Pose.read(raw)
    assert opened.header.version == 0 and opened.body.data.shape == (2, 1, 137, 2)
    np.testing.assert_array_equal(np.ma.getdata(opened.body.confidence), pose.body.confidence)
    path = tmp_path / "v00.pose"
    path.write_bytes(raw)
    pf = read_pose_file(path)
    assert (pf.layout, pf.fps) == ("openpose-137 XYC v0.0", 25.0)
    v = pf.tracks["dwpose"].values
    assert v[0, [DW[f"dwpose.body.right_wrist.{f}"] for f in ("x", "y", "score")]] == pytest.approx([0.25, 0.25, 0.8])
    assert v[1, [DW[f"dwpose.right_hand.wrist.{f}"] for f in ("x", "y", "score")]] == pytest.approx([0.5, 0.5, 0.5])
    np.testing.assert_array_equal(v, read_pose_file(save(pose, tmp_path / "v02.pose")).tracks["dwpose"].values)


def random_mediapipe(rng: np.random.Generator, t: int) -> TrackFrames:
    pose = np.concatenate(
        [rng.uniform(0, 1, (t, 33, 2)), rng.uniform(-1, 1, (t, 33, 1)), rng.uniform(0.05, 1, (t, 33, 1))], -1
    )
    hands = rng.uniform(-0.5, 1, (t, 2, 21, 3))
    hands[1, 0] = 0  # the left hand not found in frame 1
    mask = np.array([True, True, False, True, False, True][:t])
    values = np.concatenate([pose.reshape(t, -1), hands.reshape(t, -1)], 1) * mask[:, None]
    return TrackFrames(values.astype(np.float32), mask)


def random_dwpose(rng: np.random.Generator, t: int) -> TrackFrames:
    kp = np.concatenate([rng.uniform(0, 1, (t, 128, 2)), rng.uniform(0.05, 1, (t, 128, 1))], -1)
    kp[rng.uniform(size=(t, 128)) < 0.2] = 0  # undetected keypoints
    kp[0, 8] = (0.4, 0.6, 0.9)  # right hip
    kp[0, 11] = (0.6, 0.8, 0.7)  # left hip
    kp[1, 11] = 0
    mask = np.array([True, True, False, True, False, True][:t])
    return TrackFrames((kp.reshape(t, 384) * mask[:, None]).astype(np.float32), mask)


def draw(path) -> list[np.ndarray]:
    from pose_format.pose_visualizer import PoseVisualizer

    return list(PoseVisualizer(Pose.read(Path(path).read_bytes())).draw())


def test_mediapipe_round_trip(tmp_path):
    frames = random_mediapipe(np.random.default_rng(1), 6)
    path = tmp_path / "m.pose"
    write_pose_file(path, "mediapipe", frames, 29.97, 640, 480)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pose"]  # no .partial left
    pf = read_pose_file(path)
    assert (pf.layout, pf.width, pf.height, pf.n_frames) == ("holistic-75 XYZC v0.2", 640, 480, 6)
    assert pf.fps == pytest.approx(29.97)
    np.testing.assert_allclose(pf.tracks["mediapipe"].values, frames.values, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(pf.tracks["mediapipe"].mask, frames.mask)
    pose = Pose.read(path.read_bytes())
    assert [c.name for c in pose.header.components] == ["POSE_LANDMARKS", "LEFT_HAND_LANDMARKS", "RIGHT_HAND_LANDMARKS"]
    assert {c.format for c in pose.header.components} == {"XYZC"}
    i = pose.header.get_point_index("POSE_LANDMARKS", "LEFT_WRIST")
    want = frames.values[0, [MP[f"mediapipe.pose.left_wrist.{f}"] for f in ("x", "y", "z")]] * [640, 480, 1]
    assert np.ma.getdata(pose.body.data)[0, 0, i] == pytest.approx(want, rel=1e-5)
    conf = pose.body.confidence[:, 0]
    assert not conf[~frames.mask].any()  # frames without a detection: confidence 0
    assert not conf[1, 33:54].any() and (conf[1, 54:75] == 1).all()  # the missing left hand / the found right one
    images = draw(path)
    assert len(images) == 6 and images[0].shape == (480, 640, 3)
    assert (images[0] != 255).any() and not (images[2] != 255).any()


def test_dwpose_round_trip(tmp_path):
    frames = random_dwpose(np.random.default_rng(2), 6)
    path = tmp_path / "d.pose"
    write_pose_file(path, "dwpose", frames, 25.0, 320, 240)
    pf = read_pose_file(path)
    assert pf.layout == "openpose-137 XYC v0.2" and set(pf.tracks) == {"dwpose"}
    np.testing.assert_allclose(pf.tracks["dwpose"].values, frames.values, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(pf.tracks["dwpose"].mask, frames.mask)
    pose = Pose.read(path.read_bytes())
    assert [c.name for c in pose.header.components] == list(posefile.OPENPOSE137_COMPONENTS)
    data, conf = np.ma.getdata(pose.body.data)[:, 0], pose.body.confidence[:, 0]
    mid = pose.header.get_point_index("pose_keypoints_2d", "MidHip")
    assert data[0, mid] == pytest.approx([0.5 * 320, 0.7 * 240], rel=1e-5) and conf[0, mid] == pytest.approx(0.7)
    assert conf[1, mid] == 0  # one hip missing: no MidHip
    feet = [pose.header.get_point_index("pose_keypoints_2d", p) for p in op.BODY_POINTS[19:]]
    pupils = [pose.header.get_point_index("face_keypoints_2d", p) for p in ("FP_68", "FP_69")]
    assert not conf[:, feet + pupils].any() and not conf[~frames.mask].any()
    images = draw(path)
    assert len(images) == 6 and (images[0] != 255).any() and not (images[2] != 255).any()


@pytest.mark.parametrize(
    ("track", "dims", "width", "match"),
    [("smplerx", 165, 64, "only the mediapipe and dwpose"), ("dwpose", 258, 64, "needs"), ("dwpose", 384, 0, "width")],
)
def test_write_refuses_bad_input(tmp_path, track, dims, width, match):
    frames = TrackFrames(np.zeros((2, dims), np.float32), np.zeros(2, bool))
    with pytest.raises(PoseFileError, match=match):
        write_pose_file(tmp_path / "bad.pose", track, frames, 25.0, width, 64)
    assert list(tmp_path.iterdir()) == []
