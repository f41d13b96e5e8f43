"""The real `primedepth` backends: PrimeDepth's `depth_ssi` imported from both documented layouts, and a tiny local
`transformers` depth model (Depth Anything's architecture) checked against transformers' own post-processing."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from extractors import maps
from extractors.backends.depth import DepthModel, PrimeDepthImport
from extractors.runtime import BackendSetupError
from pipeline.videoio import iter_frames

H, W = 120, 160
NEAR = (40, 20, 80, 110)  # x0, y0, x1, y1: the signer, in front of a far wall


def scene(shift: int = 0, scale: float = 3.0, offset: float = 7.0) -> np.ndarray:
    """Inverse depth (larger = nearer) in arbitrary scale and shift: a far wall, the signer, a nearer hand."""
    x0, y0, x1, y1 = NEAR
    inv = np.full((H, W), 1.0)
    inv[y0:y1, x0 + shift : x1 + shift] = 2.0
    inv[y0 : y0 + 10, x0 + shift : x0 + shift + 10] = 3.0  # the hand, nearest
    return inv * scale + offset


def expected_cells(shift: int = 0) -> np.ndarray:
    """The documented rule computed from the planted geometry: the crop is the square of 1.2 x the signer's box
    (40 x 90 px) around its centre; a cell's value is its mean nearness, min / max normalised."""
    x0, y0, x1, y1 = NEAR
    side = 1.2 * (y1 - y0)
    cx, cy = (x0 + x1) / 2 + shift, (y0 + y1) / 2
    n = maps.MAP_SIZE * maps.SAMPLES
    pts = (np.arange(n) + 0.5) / n * side
    xs, ys = np.floor(cx - side / 2 + pts).astype(int), np.floor(cy - side / 2 + pts).astype(int)
    inv = scene(shift, 1.0, 0.0)
    grid = np.array([[inv[y, x] if 0 <= x < W and 0 <= y < H else np.nan for x in xs] for y in ys])
    cells = grid.reshape(24, maps.SAMPLES, 24, maps.SAMPLES)
    mean = np.nanmean(cells, axis=(1, 3))
    return np.nan_to_num((mean - np.nanmin(mean)) / (np.nanmax(mean) - np.nanmin(mean)), nan=0.0)


def test_depth_track_rule_on_a_planted_scene():
    cells, ok = maps.depth_track(scene())
    assert ok and cells == pytest.approx(expected_cells(), abs=1e-6)
    assert cells.max() == 1.0 and cells[0, 0] == 0.0  # the hand is the nearest cell; outside the signer: 0
    assert maps.depth_track(scene(scale=0.1, offset=-4.0))[0] == pytest.approx(cells, abs=1e-6)  # scale, shift free
    assert maps.depth_track(np.full((H, W), np.nan))[1] is False


ROW = {"utt_id": "u1", "video": "videos/u1.mp4", "n_frames": 4, "width": W, "height": H}


def _import(root: Path, **options) -> PrimeDepthImport:
    return PrimeDepthImport({**PrimeDepthImport.options, "depth_dir": str(root), **options}, Path("."), 0)


def test_import_npz_per_video_and_npy_per_frame(tmp_path):
    np.savez(tmp_path / "u1.npz", depth_ssi=np.stack([scene(s) for s in (0, 5, 10)]).astype(np.float32))
    out = _import(tmp_path).extract(ROW, 0)  # three maps for four frames: the last is masked
    assert out.mask.tolist() == [True, True, True, False] and (out.values[3] == 0).all()
    assert out.values[1].reshape(24, 24) == pytest.approx(expected_cells(5), abs=1e-5)
    folder = tmp_path / "u2"
    folder.mkdir()
    for t in (0, 1, 3):  # frame 2 (file 000003.npy) was not saved
        np.save(folder / f"{t + 1:06d}.npy", scene(2 * t).astype(np.float32))
    out = _import(tmp_path).extract({**ROW, "video": "videos/u2.mp4"}, 0)
    assert out.mask.tolist() == [True, True, False, True]
    assert out.values[3].reshape(24, 24) == pytest.approx(expected_cells(6), abs=1e-5)


def test_import_errors_name_the_param_or_the_file(tmp_path):
    with pytest.raises(BackendSetupError, match=r"primedepth.options.depth_dir: .*does not exist.*depth_ssi"):
        _import(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"no PrimeDepth output for videos/u1.mp4: neither .*u1.npz nor .*u1/"):
        _import(tmp_path).extract(ROW, 0)
    (tmp_path / "u1").mkdir()
    np.save(tmp_path / "u1/000001.npy", np.zeros((2, H, W)))
    with pytest.raises(ValueError, match=r"000001.npy: a depth map must be \(H, W\)"):
        _import(tmp_path).extract(ROW, 0)
    np.save(tmp_path / "u1/000001.npy", np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError, match=r"000001.npy: unreadable"):  # a pickle: refused, never loaded
        _import(tmp_path).extract(ROW, 0)
    np.savez(tmp_path / "u1.npz", depth=np.zeros((2, H, W)))
    with pytest.raises(ValueError, match=r"u1.npz: no readable depth_ssi"):
        _import(tmp_path).extract(ROW, 0)


@pytest.fixture(scope="module")
def tiny_depth_model(tmp_path_factory) -> Path:
    from tests.tiny_models import depth_model_folder

    return depth_model_folder(tmp_path_factory.mktemp("depth_model"))


def test_depth_model_matches_transformers_post_processing(tiny_depth_model, tmp_path):
    import torch
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    rng = np.random.default_rng(0)
    frames = [cv2.GaussianBlur(rng.integers(0, 255, (H, W, 3), dtype=np.uint8), (9, 9), 3) for _ in range(3)]
    writer = cv2.VideoWriter(str(tmp_path / "u1.avi"), cv2.VideoWriter_fourcc(*"FFV1"), 10.0, (W, H))
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    opts = {**DepthModel.options, "model_dir": str(tiny_depth_model), "device": "cpu", "batch_size": 2}
    out = DepthModel(opts, tmp_path, 0).extract({**ROW, "video": "u1.avi", "n_frames": 3}, 0)
    processor = AutoImageProcessor.from_pretrained(tiny_depth_model)
    model = AutoModelForDepthEstimation.from_pretrained(tiny_depth_model).eval()
    decoded = list(iter_frames(tmp_path / "u1.avi"))  # what the backend sees
    with torch.no_grad():
        pred = model(**processor(images=decoded, return_tensors="pt"))
    post = processor.post_process_depth_estimation(pred, target_sizes=[(H, W)] * 3)
    for t in range(3):
        want, ok = maps.depth_track(post[t]["predicted_depth"].numpy())
        assert out.mask[t] == ok and out.values[t].reshape(24, 24) == pytest.approx(want, abs=1e-4)


def test_depth_model_folder_errors_name_the_param(tmp_path, tiny_depth_model):
    opts = {**DepthModel.options, "device": "cpu"}
    with pytest.raises(BackendSetupError, match=r"primedepth.options.model_dir: .*does not exist.*Depth-Anything"):
        DepthModel({**opts, "model_dir": str(tmp_path / "none")}, tmp_path, 0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackendSetupError, match=r"primedepth.options.model_dir: .*has no \*.safetensors"):
        DepthModel({**opts, "model_dir": str(tmp_path / "empty")}, tmp_path, 0)
    with pytest.raises(BackendSetupError, match=r"primedepth.options.batch_size must be >= 1"):
        DepthModel({**opts, "model_dir": str(tiny_depth_model), "batch_size": 0}, tmp_path, 0)
    with pytest.raises(BackendSetupError, match=r"primedepth.options.prediction: 'disparity'"):
        DepthModel({**opts, "model_dir": str(tiny_depth_model), "prediction": "disparity"}, tmp_path, 0)
