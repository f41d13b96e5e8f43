"""The SMPLer-X import backend on output folders written in the layout of SMPLer-X's `main/inference.py`
(caizhongang/SMPLer-X): `smplx/{frame:05}_{bbox_id}.npz` and `meta/{frame:05}_{bbox_id}.json` per person and frame,
frames numbered as ffmpeg's `%06d.jpg` numbers the input images (from 1)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from extractors import registry, smplerx
from extractors.backends.smplerx_import import SMPLerXImport
from extractors.runtime import BackendSetupError

W, H = 320, 240
SHAPES = {"global_orient": (1, 3), "body_pose": (21, 3), "jaw_pose": (1, 3), "leye_pose": (1, 3),
          "reye_pose": (1, 3), "left_hand_pose": (15, 3), "right_hand_pose": (15, 3)}  # fmt: skip
ROW = {"utt_id": "u1", "video": "videos/u1.mp4", "n_frames": 6, "width": W, "height": H, "fps": 25.0}


def signer_box(t: int) -> list[float]:
    """The signer's [x, y, w, h] in frame t: central, drifting right 2 px a frame (followed by overlap)."""
    return [110.0 + 2 * t, 30.0, 100.0, 200.0]


def rival_box(t: int) -> list[float]:
    """The interlocutor's [x, y, w, h]: off to the right; smaller than the signer before frame 3, larger after."""
    return [215.0, 20.0, 80.0, 160.0] if t < 3 else [205.0, 5.0, 115.0, 230.0]


def planted_pose(person: int, frame: int) -> dict[str, np.ndarray]:
    """SMPL-X parameters whose every value says which person, frame, parameter and entry it is."""
    out = {}
    for p, (name, shape) in enumerate(SHAPES.items()):
        out[name] = person + frame / 100 + p / 1000 + np.arange(np.prod(shape)).reshape(shape) / 1e5
    return out


def expected_vector(person: int, frame: int) -> np.ndarray:
    """The 165-dim track row of `planted_pose(person, frame)`, written out in the track's order by hand."""
    pose = planted_pose(person, frame)
    order = ("global_orient", "body_pose", "jaw_pose", "leye_pose", "reye_pose", "left_hand_pose", "right_hand_pose")
    return np.concatenate([pose[k].reshape(-1) for k in order]).astype(np.float32)


def write_person(folder: Path, frame_number: int, bbox_id: int, person: int, box: list[float], frame: int) -> Path:
    """One person's output of one frame, as SMPLer-X's inference writes it (float64, with betas, expression, transl)."""
    (folder / "smplx").mkdir(parents=True, exist_ok=True)
    (folder / "meta").mkdir(parents=True, exist_ok=True)
    extra = {"betas": np.zeros((1, 10)), "expression": np.zeros((1, 10)), "transl": np.zeros((1, 3))}
    npz = folder / "smplx" / f"{frame_number:05}_{bbox_id}.npz"
    np.savez(npz, **planted_pose(person, frame), **extra)
    meta = {"focal": [5000.0, 5000.0], "princpt": [96.0, 128.0], "bbox": box, "bbox_mmdet": box, "bbox_id": bbox_id,
            "img_path": f"../frames/{frame_number:06d}.jpg"}  # fmt: skip
    (folder / "meta" / f"{frame_number:05}_{bbox_id}.json").write_text(json.dumps(meta, indent=4))
    return npz


def write_video_output(
    folder: Path, n_frames: int, missing: tuple[int, ...] = (), first: int = 1, rival_from: int = 1,
    nobody: tuple[int, ...] = (),
) -> None:  # fmt: skip
    """The signer (person 0) in every frame but `missing` and `nobody`; the interlocutor (person 1) from frame
    `rival_from` on, except in `nobody`, listed first (bbox_id 0) in odd frames and after the signer in even ones."""
    for t in range(n_frames):
        people = [] if t in nobody else [(0, signer_box(t))] * (t not in missing)
        if t >= rival_from and t not in nobody:
            people.insert(0 if t % 2 else len(people), (1, rival_box(t)))
        for bbox_id, (person, box) in enumerate(people):
            write_person(folder, t + first, bbox_id, person, box, t)


def _backend(root: Path, **options) -> SMPLerXImport:
    return SMPLerXImport({**SMPLerXImport.options, "output_dir": str(root), **options}, Path("."), 0)


def test_registered_with_its_options_version_and_no_weights(tmp_path):
    assert registry.lookup("smplerx", "import") is SMPLerXImport
    defaults = {"output_dir": "external/smplerx", "first_frame": 1}
    assert registry.backend_options("smplerx", SMPLerXImport, {}) == SMPLerXImport.options == defaults
    backend = _backend(tmp_path)
    assert backend.version() == "SMPLer-X output import" and backend.weights_hash() is None
    assert backend.max_workers() is None  # reading files: every core may


def test_the_signer_is_followed_and_frames_without_them_are_masked(tmp_path):
    # frame 3: only the interlocutor (larger than the signer from there on); frame 5: no output at all
    write_video_output(tmp_path / "u1", 6, missing=(3,), rival_from=0, nobody=(5,))
    names = sorted(p.name for p in (tmp_path / "u1/smplx").iterdir())
    assert names[:3] == ["00001_0.npz", "00001_1.npz", "00002_0.npz"] and "00006_0.npz" not in names
    out = _backend(tmp_path).extract(ROW, 0)
    assert out.values.shape == (6, smplerx.LAYOUT.dims) == (6, 165) and out.values.dtype == np.float32
    assert out.mask.tolist() == [True, True, True, False, True, False]
    for t in (0, 1, 2, 4):  # the signer's values, never the interlocutor's (listed first in odd frames, larger later)
        np.testing.assert_allclose(out.values[t], expected_vector(0, t), rtol=1e-6)
    assert not out.values[[3, 5]].any()  # masked frames are all zeros


def test_the_signer_comes_back_after_frames_without_them(tmp_path):
    write_video_output(tmp_path / "u1", 6, missing=(1, 2, 3))  # three frames with the interlocutor alone
    out = _backend(tmp_path).extract(ROW, 0)
    assert out.mask.tolist() == [True, False, False, False, True, True]
    np.testing.assert_allclose(out.values[[0, 4, 5]], [expected_vector(0, t) for t in (0, 4, 5)], rtol=1e-6)


def test_bbox_ids_are_ordered_as_numbers_and_flat_arrays_are_read(tmp_path):
    folder = tmp_path / "u1"
    for t in range(6):  # bbox ids with gaps (small boxes SMPLer-X skipped), 10 sorting after 2
        write_person(folder, t + 1, 2, 1, rival_box(t), t)
        write_person(folder, t + 1, 10, 0, signer_box(t), t)
    np.savez(folder / "smplx/00002_10.npz", **{k: v.reshape(1, -1) for k, v in planted_pose(0, 1).items()})
    out = _backend(tmp_path).extract(ROW, 0)
    assert out.mask.all()
    np.testing.assert_allclose(out.values, [expected_vector(0, t) for t in range(6)], rtol=1e-6)


def test_frame_numbers_follow_first_frame(tmp_path):
    write_video_output(tmp_path / "u1", 6, first=0)  # numbered from 0
    out = _backend(tmp_path, first_frame=0).extract(ROW, 0)
    assert out.mask.all()
    np.testing.assert_allclose(out.values[5], expected_vector(0, 5), rtol=1e-6)
    with pytest.raises(ValueError, match=r"00000_0.npz: frame 0 is not a frame of this video \(6 frames, numbered 1 "
                                         r"to 6 by smplerx.options.first_frame\)"):  # fmt: skip
        _backend(tmp_path).extract(ROW, 0)


def test_frames_past_the_video_are_an_error(tmp_path):
    write_video_output(tmp_path / "u1", 7)  # one frame more than the manifest's video has
    with pytest.raises(ValueError, match=r"00007_0.npz: frame 7 is not a frame of this video \(6 frames"):
        _backend(tmp_path).extract(ROW, 0)
    assert _backend(tmp_path).extract({**ROW, "n_frames": 7}, 0).mask.all()


def test_setup_errors_name_the_param(tmp_path):
    with pytest.raises(BackendSetupError, match=r"smplerx.options.output_dir: .*nowhere does not exist.*inference.py"):
        _backend(tmp_path / "nowhere")
    with pytest.raises(BackendSetupError, match=r"smplerx.options.output_dir is not set"):
        _backend(tmp_path, output_dir="")
    for bad in (-1, "one", 1.5, True, None):
        with pytest.raises(BackendSetupError, match=r"smplerx.options.first_frame: .*%06d.jpg"):
            _backend(tmp_path, first_frame=bad)
    assert _backend(tmp_path, first_frame="0").first_frame == 0


def test_a_video_without_output_is_an_error_naming_its_folder(tmp_path):
    with pytest.raises(ValueError, match=r"no SMPLer-X output for videos/u1.mp4: .*u1 is not a folder"):
        _backend(tmp_path).extract(ROW, 0)
    (tmp_path / "u1/img").mkdir(parents=True)  # SMPLer-X ran but kept nobody: it wrote no smplx folder
    with pytest.raises(ValueError, match=r"u1/smplx is not a folder \(SMPLer-X found nobody"):
        _backend(tmp_path).extract(ROW, 0)


def _bad_npz(tmp_path: Path, match: str, **arrays) -> None:
    """Frame 1's signer npz replaced by `arrays` (planted values, overridden; None drops one) must fail naming it."""
    write_video_output(tmp_path / "u1", 6)
    pose = {k: v for k, v in {**planted_pose(0, 0), **arrays}.items() if v is not None}
    np.savez(tmp_path / "u1/smplx/00001_0.npz", **pose)
    with pytest.raises(ValueError, match=r"u1/smplx/00001_0.npz: " + match):
        _backend(tmp_path).extract(ROW, 0)


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"jaw_pose": None}, r"SMPL-X parameters missing: \['jaw_pose'\]"),
        ({"body_pose": np.zeros((20, 3))}, r"body_pose is float64 \(20, 3\); expected \(21, 3\)"),
        ({"body_pose": np.zeros((3, 21))}, r"body_pose is float64 \(3, 21\); expected \(21, 3\)"),
        ({"left_hand_pose": np.full((15, 3), "x")}, r"left_hand_pose is <U1 \(15, 3\)"),
        ({"jaw_pose": np.full((1, 3), np.nan)}, r"non-finite values in \['jaw_pose'\]"),
        ({"global_orient": np.full((1, 3), 1e300)}, r"non-finite values in \['global_orient'\]"),  # inf in float32
        ({"jaw_pose": np.array([{"a": 1}], dtype=object)}, r"unreadable SMPLer-X output \(ValueError: Object arr"),
    ],
)
def test_a_malformed_npz_is_an_error_naming_it(tmp_path, arrays, match):
    _bad_npz(tmp_path, match, **arrays)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", r"unreadable SMPLer-X output \(EOFError"),
        (b"PK\x03\x04 truncated", r"unreadable SMPLer-X output \(BadZipFile"),
        (b"not numpy at all", r"unreadable SMPLer-X output \(ValueError"),  # would need unpickling: refused
    ],
)
def test_an_unreadable_npz_is_an_error_naming_it(tmp_path, content, match):
    write_video_output(tmp_path / "u1", 6)
    (tmp_path / "u1/smplx/00001_0.npz").write_bytes(content)
    with pytest.raises(ValueError, match=r"u1/smplx/00001_0.npz: " + match):
        _backend(tmp_path).extract(ROW, 0)


def test_a_corrupt_compressed_npz_is_an_error_naming_it(tmp_path):
    write_video_output(tmp_path / "u1", 6)
    npz = tmp_path / "u1/smplx/00001_0.npz"
    np.savez_compressed(npz, **planted_pose(0, 0))
    data = bytearray(npz.read_bytes())
    data[80:100] = bytes(20)  # inside the first member's deflated data
    npz.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"00001_0.npz: unreadable SMPLer-X output \((error|BadZipFile)"):
        _backend(tmp_path).extract(ROW, 0)


def test_a_single_npy_array_is_not_an_npz(tmp_path):
    write_video_output(tmp_path / "u1", 6)
    with open(tmp_path / "u1/smplx/00001_0.npz", "wb") as f:
        np.save(f, np.zeros((55, 3)))
    with pytest.raises(ValueError, match=r"00001_0.npz: unreadable SMPLer-X output \(ValueError: a single .npy"):
        _backend(tmp_path).extract(ROW, 0)


def test_a_misnamed_npz_is_an_error_naming_it(tmp_path):
    write_video_output(tmp_path / "u1", 6)
    (tmp_path / "u1/smplx/frame1.npz").write_bytes(b"")
    with pytest.raises(ValueError, match=r"smplx/frame1.npz: not named \{frame:05\}_\{bbox_id\}.npz"):
        _backend(tmp_path).extract(ROW, 0)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (None, r"missing \(SMPLer-X writes a meta json"),
        ("{not json", r"unreadable JSON \(JSONDecodeError"),
        (b"\xff\xfe\x00", r"unreadable JSON \(UnicodeDecodeError"),
        ('{"focal": [1, 1]}', r"no bbox"),
        ("[110, 30, 100, 200]", r"no bbox"),
        ('{"bbox": [110, 30, 100]}', r"bbox \[110, 30, 100\] is not \[x, y, w, h\]"),
        ('{"bbox": "abcd"}', r"bbox 'abcd' is not \[x, y, w, h\]"),
        ('{"bbox": null}', r"bbox None is not \[x, y, w, h\]"),
        (
            '{"bbox": [110, 30, -100, 200]}',
            r"bbox \[110, 30, -100, 200\] is not a box: \[x, y, w, h\] must be finite, w and h > 0",
        ),
        ('{"bbox": [110, 30, NaN, 200]}', r"bbox \[110, 30, nan, 200\] is not a box"),
    ],
)
def test_a_malformed_meta_json_is_an_error_naming_it(tmp_path, content, match):
    write_video_output(tmp_path / "u1", 6)
    meta = tmp_path / "u1/meta/00002_0.json"
    if content is None:
        meta.unlink()
    elif isinstance(content, bytes):
        meta.write_bytes(content)
    else:
        meta.write_text(content)
    with pytest.raises(ValueError, match=r"u1/meta/00002_0.json: " + match):
        _backend(tmp_path).extract(ROW, 0)
