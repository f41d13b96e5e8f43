"""Fault injection: stages killed part-way, rerun, give what an uninterrupted run gives.

The fast cases here run in `make test`; `make faults` (tools/faults.py) kills every stage of a tiny `dvc repro`
at random points and compares the rerun with an uninterrupted one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline.train_pose2gloss import configs_from_params, train
from tools.faults import folder_bytes

TINY = dict(d_track=16, unified_dim=32, unet_channels=[8, 16], d_model=32, n_decoder_layers=1, n_decoder_heads=2,
            n_fusion_heads=2, batch_size=8, epochs=2, checkpoint_every=1)  # fmt: skip


@pytest.mark.parametrize("dvc_deleted_the_curves", [False, True])
def test_killed_training_resumes_with_the_uninterrupted_curves(features, tmp_path, dvc_deleted_the_curves):
    """A resumed run's DVCLive curves are rebuilt from the checkpointed history: steps 0, 1, 2 (not 0, 0, 1) and the
    same values as an uninterrupted run, whether the killed run's truncated curves are still there or DVC removed
    them with the stage's outputs."""
    corpus, store = features
    whole = train(*configs_from_params(dict(TINY), seed=3), store, corpus, tmp_path / "whole", tmp_path / "live_whole")
    per_epoch = whole["steps"] // TINY["epochs"]
    work, live = tmp_path / "work", tmp_path / "live"
    stopped = train(*configs_from_params(dict(TINY), seed=3), store, corpus, tmp_path / "out", live,
                    max_steps=per_epoch + 1, work_dir=work)  # killed in the second epoch  # fmt: skip
    assert stopped == {"stopped_at_step": per_epoch + 1}
    assert (live / "plots/metrics/val/wer.tsv").read_text().splitlines()[1:] != []  # the first epoch was logged
    if dvc_deleted_the_curves:
        shutil.rmtree(live)
    train(*configs_from_params(dict(TINY), seed=3), store, corpus, tmp_path / "out", live, work_dir=work)
    wer = (live / "plots/metrics/val/wer.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in wer] == ["step", "0", "1"]
    assert folder_bytes(live) == folder_bytes(tmp_path / "live_whole")


def _four_utterances(small_corpus, tmp_path: Path) -> Path:
    """A copy of the small corpus cut to four utterances (real videos, for a backend that reads them)."""
    from pipeline.corpus.manifest import read_manifest

    _, corpus, _ = small_corpus
    out = tmp_path / "corpus"
    shutil.copytree(corpus, out, ignore=shutil.ignore_patterns("skeleton.zarr"))
    read_manifest(out).iloc[:4].to_parquet(out / "manifest.parquet", index=False)
    return out


def test_resumed_extraction_redoes_a_batch_whose_video_changed(small_corpus, tmp_path, monkeypatch):
    """Killed while one video was empty (recorded as a skip), the video restored, rerun: the utterance is extracted
    from the restored video, and the store equals an uninterrupted run's (finished batches are reused only when
    their input files are unchanged)."""
    from pipeline import extract
    from pipeline.store import FrameStore

    corpus = _four_utterances(small_corpus, tmp_path)
    whole = extract.extract_track("mediapipe", corpus, tmp_path / "whole", backend="holistic", workers=1)
    assert whole["skipped"] == [] and whole["resumed_batches"] == 0
    video = corpus / extract.read_manifest(corpus)["video"].iloc[0]
    saved = video.read_bytes()
    video.write_bytes(b"")
    real_save, saves = extract._save_batch, []

    def killed_after_two(*args):
        real_save(*args)
        saves.append(args[1])
        if len(saves) == 2:
            raise KeyboardInterrupt  # the stage killed with two batches on disk, one of them the empty video's

    monkeypatch.setattr(extract, "_save_batch", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        extract.extract_track("mediapipe", corpus, tmp_path / "out", backend="holistic", workers=1)
    monkeypatch.setattr(extract, "_save_batch", real_save)
    video.write_bytes(saved)
    resumed = extract.extract_track("mediapipe", corpus, tmp_path / "out", backend="holistic", workers=1)
    assert resumed["skipped"] == [] and resumed["resumed_batches"] == 1  # the empty video's batch was redone
    a, b = FrameStore(tmp_path / "whole/mediapipe.zarr"), FrameStore(tmp_path / "out/mediapipe.zarr")
    for name in ("values", "mask"):
        assert a.read_all(name).tobytes() == b.read_all(name).tobytes()


def _children(pid: int) -> list[int]:
    """Live processes whose parent is `pid` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_killed_extraction_leaves_no_worker_processes(small_corpus, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    _, corpus, _ = small_corpus
    (tmp_path / "params.yaml").write_text("seed: 1\ndwpose:\n  backend: simulated\n")
    env = dict(os.environ, SIGNX_WORKERS="2", PYTHONPATH=str(Path(__file__).parents[1]))
    stage = subprocess.Popen([sys.executable, "-m", "pipeline.extract", "dwpose", "--corpus", str(corpus), "--out",
                              str(tmp_path / "tracks")], cwd=tmp_path, env=env, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline, workers = time.monotonic() + 120, []
    while len(workers) < 2 and time.monotonic() < deadline and stage.poll() is None:
        workers = _children(stage.pid)  # the pool's workers (and the resource tracker) once started
        time.sleep(0.05)
    assert len(workers) >= 2, "the stage finished or never started its pool"
    stage.send_signal(signal.SIGKILL)
    stage.wait()
    deadline = time.monotonic() + 20
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [w for w in workers if _alive(w)]
    for w in left:
        os.kill(w, signal.SIGKILL)
    assert left == []


@pytest.mark.parametrize(("code", "says"), [(28, "no space left on the device"), (30, "read-only file system")])
def test_a_full_disk_or_read_only_folder_is_one_line_and_keeps_the_previous_output(
    small_corpus, tmp_path, monkeypatch, code, says
):
    """The extract stage hits ENOSPC / EROFS while saving its work: one line naming the file, no traceback, and the
    store of the previous run is byte for byte as it was (a rerun with space resumes and finishes)."""
    import errno

    import numpy as np

    from pipeline import extract
    from pipeline.params import run_cli

    _, corpus, _ = small_corpus
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("seed: 1\ndwpose:\n  backend: simulated\n")
    argv = ["dwpose", "--corpus", str(corpus), "--out", str(tmp_path / "tracks"), "--workers", "1"]
    extract.main(argv)
    store = tmp_path / "tracks/dwpose.zarr"
    before = folder_bytes(store)
    real_savez, saved = np.savez, []

    def full_after_three(path, **arrays):
        if len(saved) == 3:
            raise OSError(code, errno.errorcode[code], str(path))
        saved.append(path)
        real_savez(path, **arrays)

    monkeypatch.setattr(extract.np, "savez", full_after_three)
    (tmp_path / "params.yaml").write_text("seed: 2\ndwpose:\n  backend: simulated\n")  # another run: all redone
    with pytest.raises(SystemExit) as ended:
        run_cli(lambda: extract.main(argv))
    message = str(ended.value)
    assert says in message and "batch_0000003" in message and "\n" not in message
    assert folder_bytes(store) == before  # the previous store, untouched
    monkeypatch.setattr(extract.np, "savez", real_savez)
    assert extract.extract_track("dwpose", corpus, tmp_path / "tracks", seed=2, workers=1)["resumed_batches"] == 3


@pytest.mark.slow
def test_dvc_repro_killed_in_training_reruns_to_the_uninterrupted_outputs(tmp_path):
    """`make faults` in small: a tiny `dvc repro` SIGKILLed (DVC and the stage) inside Stage I training, rerun:
    every cached output has the uninterrupted run's hash and `dvc status` is clean; then two `dvc repro` at once:
    one ends in DVC's lock error and the outputs stay consistent."""
    import importlib.util
    import random

    spec = importlib.util.spec_from_file_location("faults", Path(__file__).parents[1] / "tools/faults.py")
    faults = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(faults)
    rows = faults.kill_sweep(tmp_path, ["train_pose2gloss"], 1, random.Random(0))
    assert [r["stage"] for r in rows] == ["train_pose2gloss", "two dvc repro at once"]
    assert rows[0]["killed"] == [True] and all(r["matched"] for r in rows), faults.report(rows)
