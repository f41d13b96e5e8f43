"""`dvc repro` end to end with the real extractor backends selected, on a tiny corpus: the models are the tests'
tiny ones (`tests/tiny_models.py`) and the imported outputs are written in the real tools' layouts, under
`external/<track>/` where the params point by default."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.corpus.manifest import read_manifest
from pipeline.store import FrameStore
from tests import tiny_models
from tests.test_backend_depth import scene
from tests.test_backend_smplerx import expected_vector, write_video_output
from tests.test_pipeline_dvc import _dvc, _set_params, _stages_run, repo  # noqa: F401  (repo: the fixture)

REAL = {"smplerx": "import", "dwpose": "onnx", "primedepth": "import", "sapiens": "torchscript"}


def _sha256(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()


def _install_real_inputs(repo: Path) -> dict[str, list[Path]]:  # noqa: F811
    """The tiny models and imported outputs every real backend reads, at the params' default paths; returns the
    weight files of each track."""
    rows = read_manifest(repo / "data/corpus").to_dict("records")
    size = int(rows[0]["width"])
    whole = tiny_models.PlantedPerson((0, 0, size, size), score=50.0)  # seen wherever the frame has a little red
    det, pose = tiny_models.dwpose_models(repo / "external/dwpose", [whole], ratio=640 / size)
    sapiens = tiny_models.sapiens_model(
        repo / "external/sapiens/sapiens_0.3b_goliath_best_goliath_mIoU_7673_epoch_194_torchscript.pt2"
    )
    for row in rows:
        stem, n = Path(row["video"]).stem, int(row["n_frames"])
        write_video_output(repo / "external/smplerx" / stem, n, missing=(1,))  # SMPLer-X missed frame 2
        depth = np.stack([scene(t % 7) for t in range(n)]).astype(np.float32)  # PrimeDepth's depth_ssi
        np.savez(repo / "external/primedepth" / f"{stem}.npz", depth_ssi=depth)
    return {"dwpose": [det, pose], "sapiens": [sapiens]}


@pytest.mark.slow
def test_repro_with_the_real_backends_then_a_missing_model_names_its_param(repo):  # noqa: F811
    _dvc("repro", "prepare", cwd=repo)
    weights = _install_real_inputs(repo)
    for track, backend in REAL.items():
        _set_params(repo, track, backend=backend)
    out = _dvc("repro", cwd=repo).stdout
    assert {f"extract@{t}" for t in REAL} <= _stages_run(out) and "train_video2pose" in _stages_run(out)
    for track, backend in REAL.items():
        store = FrameStore(repo / f"data/tracks/{track}.zarr")
        report = json.loads((repo / f"metrics/extract/{track}.json").read_text())
        assert store.attrs["backend"] == report["backend"] == backend
        expected_hash = _sha256(*weights[track]) if track in weights else None  # imports read no weights
        assert store.attrs["weights_sha256"] == report["weights_sha256"] == expected_hash
        assert report["skipped"] == [] and report["detected_frame_fraction"] > 0.5, report
    smplerx = FrameStore(repo / "data/tracks/smplerx.zarr")
    first = read_manifest(repo / "data/corpus")["utt_id"].iloc[0]
    assert smplerx.read(first, "mask")[:3].tolist() == [True, False, True]
    assert smplerx.read(first)[0] == pytest.approx(expected_vector(0, 0))
    assert "Running stage" not in _dvc("repro", cwd=repo).stdout

    weights["dwpose"][0].unlink()  # the detector is gone: the stage stops naming the param, before any work
    status = _dvc("status", cwd=repo).stdout
    assert "extract@dwpose" in status and "external/dwpose" in status
    failed = _dvc("repro", "extract@dwpose", cwd=repo, check=False)
    assert failed.returncode != 0
    assert "dwpose.options.detector: external/dwpose/yolox_l.onnx does not exist" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert not (repo / "data/tracks/dwpose.zarr.parts").exists() and not (repo / "data/tracks/dwpose.zarr").exists()
