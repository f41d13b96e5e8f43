"""The DVC pipeline from a fresh repository: repro, no-op second repro, param changes, bad params."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TRACKS = ("smplerx", "dwpose", "mediapipe", "primedepth", "sapiens")
TINY_CORPUS = dict(
    n_glosses=10, n_signers=3, n_unseen_signers=1, n_utterances=20, n_unseen_utterances=3,
    tokens_per_utterance=[2, 3], width=48, height=48, fps=10,
)  # fmt: skip
TINY_POSE2GLOSS = dict(
    d_track=16, unified_dim=32, unet_channels=[8, 16], d_model=32, n_decoder_layers=1, n_decoder_heads=2,
    n_fusion_heads=2, epochs=2, batch_size=8, inference_steps=2,
)  # fmt: skip
TINY_VIDEO2POSE = dict(
    img_size=32, patch_size=16, vit_dim=32, vit_depth=1, vit_heads=2, d_temporal=32, temporal_layers=1,
    temporal_heads=2, epochs=1, batch_size=8,
)  # fmt: skip
# every stage after fuse
TRAINING = {"train_pose2gloss", "evaluate@pose2gloss", "temperature_ablation", "train_video2pose",
            "evaluate@video2gloss", "tracks", "tables"}  # fmt: skip


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # `python` in dvc.yaml is this one
    env["SIGNX_WORKERS"] = "1"
    env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = "signx tests"
    env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = "tests@signx.invalid"
    return env


def _run(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def _dvc(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "dvc", *args], cwd, check)


def _set_params(repo: Path, section: str = "corpus.synthetic", **values) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    node = params
    for key in section.split("."):
        node = node[key]
    node.update(values)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _stages_run(out: str) -> set[str]:
    return {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage '")}


def make_repo(repo: Path) -> Path:
    """A fresh git + DVC repository at `repo` holding the project's pipeline with a tiny corpus (also used by
    `make faults`, tools/faults.py)."""
    repo.mkdir()
    for name in ("pipeline", "extractors", "external"):
        if (ROOT / name).exists():
            shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in (
        "dvc.yaml",
        "params.yaml",
        ".gitignore",
        "metrics/table5_runs.json",
        "metrics/tracks_specialists.json",
    ):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, repo / name)
    _set_params(repo, "corpus.synthetic", **TINY_CORPUS)
    _set_params(repo, "corpus", min_train_occurrences=2)
    _set_params(repo, "pose2gloss", **TINY_POSE2GLOSS)
    _set_params(repo, "video2pose", **TINY_VIDEO2POSE)
    _run(["git", "init", "-q"], repo)
    _run(["git", "config", "user.name", "signx tests"], repo)
    _run(["git", "config", "user.email", "tests@signx.invalid"], repo)
    _dvc("init", "-q", cwd=repo)
    _run(["git", "add", "-A"], repo)
    _run(["git", "commit", "-qm", "init"], repo)
    return repo


@pytest.fixture
def repo(tmp_path) -> Path:
    return make_repo(tmp_path / "repo")


@pytest.mark.slow
def test_repro_then_nothing_to_do_then_param_change_reruns_prepare(repo):
    out = _dvc("repro", cwd=repo).stdout
    assert _stages_run(out) == {"check_params", "prepare", "fuse"} | {f"extract@{t}" for t in TRACKS} | TRAINING
    assert (repo / "data/features.zarr").exists()
    published = {f"{n}{e}" for n in ("best", "q25", "q50", "q75", "q100") for e in (".safetensors", ".json")}
    assert {p.name for p in (repo / "models/pose2gloss").iterdir()} == published
    assert {p.name for p in (repo / "models/video2pose").iterdir()} == {"best.safetensors", "best.json"}
    for stage in ("pose2gloss", "video2pose"):  # work state stays outside the outputs
        assert (repo / "models/.work" / stage / "last.pt").exists()
    assert (repo / "data/corpus/manifest.parquet").exists()
    assert (repo / "metrics/corpus.json").exists() and (repo / "metrics/corpus_preview.png").exists()
    manifest_before = (repo / "data/corpus/manifest.parquet").read_bytes()

    again = _dvc("repro", cwd=repo).stdout
    assert "Running stage" not in again and "up to date" in again

    _set_params(repo, n_glosses=8)
    status = _dvc("status", cwd=repo).stdout
    assert "prepare" in status and "corpus" in status
    rerun = _dvc("repro", cwd=repo).stdout
    assert "prepare" in _stages_run(rerun)
    assert (repo / "data/corpus/manifest.parquet").read_bytes() != manifest_before

    _set_params(repo, n_glosses=10)  # back to the first params: DVC restores the cached corpus, no rerun
    back = _dvc("repro", cwd=repo).stdout
    assert "Running stage" not in back
    assert (repo / "data/corpus/manifest.parquet").read_bytes() == manifest_before


@pytest.mark.slow
def test_changing_one_extractor_reruns_only_it_and_fuse(repo):
    _dvc("repro", cwd=repo)
    _set_params(repo, "dwpose", options={"noise": 0.5})
    assert _stages_run(_dvc("repro", cwd=repo).stdout) == {"check_params", "extract@dwpose", "fuse"} | TRAINING
    _set_params(repo, "sapiens", enabled=False)  # disabling a track changes nothing upstream: only fuse reruns
    assert _stages_run(_dvc("repro", cwd=repo).stdout) == {"check_params", "fuse"} | TRAINING
    models = {p.name: p.read_bytes() for p in (repo / "models/pose2gloss").iterdir()}
    _set_params(repo, "pose2gloss", lr="fast")  # a mistake: stopped by check_params, before any output is deleted
    failed = _dvc("repro", cwd=repo, check=False)
    assert failed.returncode != 0 and "Traceback" not in failed.stdout + failed.stderr
    assert "params.yaml: pose2gloss.lr: expected a number, got 'fast'" in failed.stdout + failed.stderr
    assert _stages_run(failed.stdout) == {"check_params"}
    assert {p.name: p.read_bytes() for p in (repo / "models/pose2gloss").iterdir()} == models


@pytest.mark.slow
def test_prepare_with_bad_params_fails_clearly(repo):
    _set_params(repo, n_glosses=0)
    proc = _run([sys.executable, "-m", "pipeline.prepare"], repo, check=False)
    assert proc.returncode != 0
    assert "n_glosses must be at least 1" in proc.stderr
    assert not (repo / "data/corpus").exists()


@pytest.mark.slow
def test_temperature_experiment_reruns_only_evaluation_and_tables(repo):
    _dvc("repro", cwd=repo)
    for name in ("metrics/pose2gloss.json", "metrics/tables.md", "metrics/hypotheses/pose2gloss.csv",
                 "metrics/temperature_ablation.json", "metrics/temperature_ablation.png", "metrics/video2gloss.json",
                 "metrics/hypotheses/video2gloss.csv"):  # fmt: skip
        assert (repo / name).exists(), name
    _run(["git", "add", "-A"], repo)
    _run(["git", "commit", "-qm", "baseline"], repo)
    out = _dvc("exp", "run", "-S", "temperature=0.3", cwd=repo).stdout
    assert _stages_run(out) == {"check_params", "evaluate@pose2gloss", "evaluate@video2gloss", "tracks", "tables"}
    diff = _dvc("metrics", "diff", "--json", cwd=repo).stdout
    changed = json.loads(diff)["metrics/pose2gloss.json"]
    assert changed["decoding.temperature"] == {"old": 0.7, "new": 0.3, "diff": pytest.approx(-0.4)}
    tables = (repo / "metrics/tables.md").read_text()
    assert "temperature 0.3" in tables
    assert "| Video2Gloss | test | not run" not in tables  # Stage II's row is filled from its own evaluation


@pytest.mark.slow
def test_table5_queue_sequence_fills_its_cell(repo):
    """The README's Table 5 sequence, for one column: queue an experiment, run the queue, collect, render."""
    _dvc("repro", cwd=repo)
    _run(["git", "add", "-A"], repo)
    _run(["git", "commit", "-qm", "baseline"], repo)
    # isolated, 100 glosses: one clip per sign, every gloss at least twice in train (tiny video, tiny models)
    _dvc("exp", "run", "--queue", "-n", "iso100", "-S", "corpus.synthetic.task=isolated",
         "-S", "corpus.synthetic.n_glosses=100", "-S", "corpus.synthetic.n_utterances=260",
         "-S", "corpus.synthetic.n_unseen_utterances=10", cwd=repo)  # fmt: skip
    _dvc("queue", "start", "--jobs", "1", cwd=repo)
    for _ in range(300):  # the queue runs in the background
        status = _dvc("queue", "status", cwd=repo).stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(2)
    assert "Success" in status, status
    _run([sys.executable, "-m", "pipeline.tables", "collect"], repo)
    runs = json.loads((repo / "metrics/table5_runs.json").read_text())
    assert set(runs) == {"isolated-100"} and runs["isolated-100"]["experiment"] == "iso100"
    top1 = {}
    for model in ("pose2gloss", "video2gloss"):
        test = runs["isolated-100"][model]["test"]
        # isolated signs: one gloss per utterance, so Top-1 is a whole number of hits out of the test utterances
        assert test["reference_glosses"] == test["utterances"] > 0
        hits = test["top1"] * test["utterances"] / 100
        assert hits == pytest.approx(round(hits), abs=1e-6), test["top1"]
        top1[model] = test["top1"]
    _dvc("repro", "tables", cwd=repo)
    row = next(line for line in (repo / "metrics/tables.md").read_text().splitlines() if "isolated, 100" in line)
    cells = [c.strip() for c in row.split("|")]
    # both models' Top-1 (the collected figures, as rendered) and the experiment
    assert cells[3:5] == [f"{top1['pose2gloss']:.2f}", f"{top1['video2gloss']:.2f}"] and cells[6] == "iso100", row
