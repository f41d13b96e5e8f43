"""Fault injection: stages killed part-way, rerun, give what an uninterrupted run gives.

The fast cases here run in `make test`; `make faults` (tools/faults.py) kills every stage of a tiny `dvc repro`
at random points and compares the rerun with an uninterrupted one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline.train_pose2gloss import configs_from_params, train

TINY = dict(d_track=16, unified_dim=32, unet_channels=[8, 16], d_model=32, n_decoder_layers=1, n_decoder_heads=2,
            n_fusion_heads=2, batch_size=8, epochs=2, checkpoint_every=1)  # fmt: skip


def _curves(live: Path) -> dict[str, bytes]:
    return {str(p.relative_to(live)): p.read_bytes() for p in sorted(live.rglob("*")) if p.is_file()}


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
    assert _curves(live) == _curves(tmp_path / "live_whole")
