"""The real Sapiens backend with a tiny TorchScript segmenter of the real signature whose labels are the planted
colours of the frame (Torso red, Right_Hand green, Face_Neck blue, Background black)."""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

from extractors import maps
from extractors.backends.sapiens_torchscript import SapiensTorchScript
from extractors.runtime import BackendSetupError
from tests.tiny_models import PART_COLOURS, sapiens_model

H, W = 1024, 768  # the model's own input size: the resize is exact, so the planted labels are too
TORSO = (300, 400, 500, 900)  # x0, y0, x1, y1 (even: the model labels 2 x 2 blocks)
HAND = (500, 500, 560, 560)
HEAD = (360, 240, 440, 400)


def planted_frame(shift: int = 0) -> np.ndarray:
    frame = np.zeros((H, W, 3), np.uint8)
    for (x0, y0, x1, y1), part in ((TORSO, 21), (HAND, 14), (HEAD, 2)):
        frame[y0:y1, x0 + shift : x1 + shift] = PART_COLOURS[part]
    return frame


def planted_labels(shift: int = 0) -> np.ndarray:
    labels = np.zeros((H, W), np.int64)
    for (x0, y0, x1, y1), part in ((TORSO, 21), (HAND, 14), (HEAD, 2)):
        labels[y0:y1, x0 + shift : x1 + shift] = part
    return labels


def expected_cells(shift: int = 0) -> np.ndarray:
    """The documented rule from the planted geometry: the foreground's box is x 300-560, y 240-900 (660 high),
    the crop the square of 1.2 x 660 around its centre, each cell the majority of its 8 x 8 sample points."""
    side = 1.2 * 660
    cx, cy = (300 + 560) / 2 + shift, (240 + 900) / 2
    n = 24 * maps.SAMPLES
    pts = (np.arange(n) + 0.5) / n * side
    xs, ys = np.floor(cx - side / 2 + pts).astype(int), np.floor(cy - side / 2 + pts).astype(int)
    lab = planted_labels(shift)
    grid = np.array([[lab[y, x] if 0 <= x < W and 0 <= y < H else 0 for x in xs] for y in ys])
    blocks = grid.reshape(24, maps.SAMPLES, 24, maps.SAMPLES).transpose(0, 2, 1, 3).reshape(24, 24, -1)
    return np.array([[np.bincount(b, minlength=28).argmax() for b in row] for row in blocks])


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return sapiens_model(tmp_path_factory.mktemp("sapiens") / "seg.pt2")


def _backend(model: Path, corpus: Path = Path("."), **options) -> SapiensTorchScript:
    opts = {**SapiensTorchScript.options, "model": str(model), "device": "cpu", **options}
    return SapiensTorchScript(opts, corpus, 0)


def test_labels_come_back_at_the_planted_pixels_and_cells(model):
    backend = _backend(model)
    labels = backend.labels([planted_frame(), planted_frame(40)])
    assert (labels[0] == planted_labels()).all() and (labels[1] == planted_labels(40)).all()
    assert (maps.majority_cells(labels[1], maps.foreground_square(labels[1] != 0)) == expected_cells(40)).all()
    assert {14, 21, 2} <= set(np.unique(expected_cells()).tolist())  # the hand is big enough to own cells


def test_extract_a_video_with_an_empty_frame(model, tmp_path):
    writer = cv2.VideoWriter(str(tmp_path / "u1.avi"), cv2.VideoWriter_fourcc(*"FFV1"), 10.0, (W, H))
    for frame in (planted_frame(), planted_frame(40), np.zeros((H, W, 3), np.uint8)):
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    row = {"utt_id": "u1", "video": "u1.avi", "n_frames": 3, "width": W, "height": H}
    out = _backend(model, tmp_path, batch_size=2).extract(row, 0)
    assert out.mask.tolist() == [True, True, False] and (out.values[2] == 0).all()
    for t, shift in ((0, 0), (1, 40)):  # the video's colour conversion may move a boundary label: 98 % of cells
        assert (out.values[t].reshape(24, 24) == expected_cells(shift)).mean() > 0.98


def test_fed_as_bgr_the_torso_is_not_found(model):
    labels = _backend(model).labels([planted_frame()[..., ::-1].copy()])[0]
    x0, y0, x1, y1 = TORSO
    assert (labels[y0 + 2 : y1 - 2, x0 + 2 : x0 + 100] == 2).all()  # red and blue swap: the torso reads Face_Neck


def test_bad_model_files_name_the_param_and_are_never_executed(model, tmp_path):
    with pytest.raises(BackendSetupError, match=r"sapiens.options.model: .*none.pt2 does not exist.*Goliath"):
        _backend(tmp_path / "none.pt2")
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    evil = tmp_path / "evil.pt2"
    evil.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(BackendSetupError, match=r"sapiens.options.model: .*evil.pt2 is not a TorchScript model"):
        _backend(evil)
    assert not marker.exists()
    wrong = sapiens_model(tmp_path / "wrong.pt2", channels=20)
    with pytest.raises(BackendSetupError, match=r"gives output \[1,20,512,384\]; expected .*output0 \[\?,28,\?,\?\]"):
        _backend(wrong)
    with pytest.raises(BackendSetupError, match="dtype: float16 needs CUDA"):
        _backend(model, dtype="float16")
    assert len(_backend(model).weights_hash()) == 64 and "seg.pt2" in _backend(model).version()
