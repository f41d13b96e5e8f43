"""The SMPLer-X import backend on output folders written in the layout of SMPLer-X's inference script."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from extractors import smplerx
from extractors.backends.smplerx_import import SMPLerXImport
from extractors.runtime import BackendSetupError

W, H = 320, 240
SIGNER_BOX = [110.0, 30.0, 100.0, 200.0]  # [x, y, w, h], as SMPLer-X's meta json has it
OTHER_BOX = [200.0, 10.0, 118.0, 228.0]  # the interlocutor: larger, and listed first in some frames
SHAPES = {"global_orient": (1, 3), "body_pose": (21, 3), "jaw_pose": (1, 3), "leye_pose": (1, 3),
          "reye_pose": (1, 3), "left_hand_pose": (15, 3), "right_hand_pose": (15, 3)}  # fmt: skip


def planted_pose(person: int, frame: int) -> dict[str, np.ndarray]:
    """SMPL-X parameters whose every value says which person, frame, parameter and entry it is."""
    out = {}
    for p, (name, shape) in enumerate(SHAPES.items()):
        out[name] = person + frame / 100 + p / 1000 + np.arange(np.prod(shape)).reshape(shape) / 1e5
    return out


def expected_vector(person: int, frame: int) -> np.ndarray:
    pose = planted_pose(person, frame)
    return np.concatenate([pose[k].reshape(-1) for k in smplerx.SMPLX_PARAMS]).astype(np.float32)


def write_person(folder: Path, frame_number: int, bbox_id: int, person: int, box: list[float], frame: int) -> Path:
    """One person's output of one frame, as SMPLer-X's inference writes it (plus its betas, expression, transl)."""
    (folder / "smplx").mkdir(parents=True, exist_ok=True)
    (folder / "meta").mkdir(parents=True, exist_ok=True)
    extra = {"betas": np.zeros((1, 10)), "expression": np.zeros((1, 10)), "transl": np.zeros((1, 3))}
    npz = folder / "smplx" / f"{frame_number:05}_{bbox_id}.npz"
    np.savez(npz, **planted_pose(person, frame), **extra)
    meta = {"focal": [5000, 5000], "princpt": [96, 128], "bbox": box, "bbox_mmdet": box, "bbox_id": bbox_id,
            "img_path": f"frames/{frame_number:06d}.jpg"}  # fmt: skip
    (folder / "meta" / f"{frame_number:05}_{bbox_id}.json").write_text(json.dumps(meta))
    return npz


def write_video_output(folder: Path, n_frames: int, missing: tuple[int, ...] = (), first: int = 1) -> None:
    """Signer (person 0) in every frame but `missing`; the interlocutor (person 1) from frame 2 on, listed first."""
    for t in range(n_frames):
        ids = []
        if t >= 2:
            ids.append((1, OTHER_BOX))
        if t not in missing:
            ids.append((0, SIGNER_BOX))
        for bbox_id, (person, box) in enumerate(ids):
            write_person(folder, t + first, bbox_id, person, box, t)


def _backend(root: Path, **options) -> SMPLerXImport:
    return SMPLerXImport({**SMPLerXImport.options, "output_dir": str(root), **options}, Path("."), 0)


ROW = {"utt_id": "u1", "video": "videos/u1.mp4", "n_frames": 6, "width": W, "height": H}


def test_the_signer_is_followed_and_frames_without_output_are_masked(tmp_path):
    write_video_output(tmp_path / "u1", 6, missing=(3,))
    out = _backend(tmp_path).extract(ROW, 0)
    assert out.values.shape == (6, 165) and out.mask.tolist() == [True, True, True, False, True, True]
    for t in (0, 1, 2, 4, 5):  # the signer's values, never the interlocutor's (listed first, larger)
        assert out.values[t] == pytest.approx(expected_vector(0, t))
    assert (out.values[3] == 0).all()  # frame 3: only the interlocutor


def test_frame_numbers_follow_first_frame_and_extra_frames_are_ignored(tmp_path):
    write_video_output(tmp_path / "u1", 8, first=0)  # numbered from 0, and two frames more than the clip has
    out = _backend(tmp_path, first_frame=0).extract(ROW, 0)
    assert out.mask.all() and out.values[5] == pytest.approx(expected_vector(0, 5))
    shifted = _backend(tmp_path, first_frame=1).extract(ROW, 0)  # the default numbering: one frame later
    assert shifted.values[0] == pytest.approx(expected_vector(0, 1))


def test_bad_inputs_name_the_param_or_the_file(tmp_path):
    with pytest.raises(BackendSetupError, match=r"smplerx.options.output_dir: .*does not exist.*inference.py"):
        _backend(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"no SMPLer-X output for videos/u1.mp4: .*u1/smplx is not a folder"):
        _backend(tmp_path).extract(ROW, 0)
    write_video_output(tmp_path / "u1", 2)
    npz = tmp_path / "u1/smplx/00001_0.npz"
    (tmp_path / "u1/meta/00001_0.json").unlink()
    with pytest.raises(ValueError, match=r"00001_0.json: missing"):
        _backend(tmp_path).extract(ROW, 0)
    (tmp_path / "u1/meta/00001_0.json").write_text('{"focal": [1, 1]}')
    with pytest.raises(ValueError, match=r"00001_0.json: no readable bbox"):
        _backend(tmp_path).extract(ROW, 0)
    (tmp_path / "u1/meta/00001_0.json").write_text(json.dumps({"bbox": SIGNER_BOX}))
    pose = planted_pose(0, 0)
    del pose["jaw_pose"]
    np.savez(npz, **pose)
    with pytest.raises(ValueError, match=r"00001_0.npz: SMPL-X parameters missing: \['jaw_pose'\]"):
        _backend(tmp_path).extract(ROW, 0)
    np.savez(npz, **{**planted_pose(0, 0), "body_pose": np.zeros((20, 3))})
    with pytest.raises(ValueError, match=r"00001_0.npz: body_pose: expected 63 values"):
        _backend(tmp_path).extract(ROW, 0)
    np.savez(npz, **{**planted_pose(0, 0), "jaw_pose": np.full((1, 3), np.nan)})
    with pytest.raises(ValueError, match=r"00001_0.npz: non-finite"):
        _backend(tmp_path).extract(ROW, 0)
    np.savez(npz, **{**planted_pose(0, 0), "jaw_pose": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(ValueError, match=r"00001_0.npz: unreadable SMPLer-X output"):  # a pickle: never loaded
        _backend(tmp_path).extract(ROW, 0)
    (tmp_path / "u1/smplx/frame1.npz").write_bytes(b"")
    with pytest.raises(ValueError, match=r"frame1.npz: not named"):
        _backend(tmp_path).extract(ROW, 0)
