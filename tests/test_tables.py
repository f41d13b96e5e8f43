"""The tables stage: Table 3 from this workspace's metrics, Table 5 cells from `dvc exp show --json`."""

from __future__ import annotations

import json

from pipeline import tables


def _exp(name, task, n, wer=None, top1=None, ts="2026-01-01T00:00:00"):
    split = {"wer": wer, "top1": top1, "bleu": 1.0, "top5": 2.0, "best": 3.0}
    return {
        "rev": f"rev-{name}", "name": name,
        "data": {"timestamp": ts,
                 "params": {"params.yaml": {"data": {"corpus": {"synthetic": {"task": task, "n_glosses": n}}}}},
                 "metrics": {"metrics/pose2gloss.json": {"data": {"test": split}}}},
    }  # fmt: skip


def test_collect_picks_the_latest_matching_experiment_per_column():
    # the nesting of `dvc exp show --json` in DVC 3: workspace / baseline rows with experiments below them
    show = [
        _exp("workspace", "continuous", 100, wer=30.0),
        {**_exp("main", "continuous", 100, wer=31.0), "experiments": [
            {"revs": [_exp("iso100-old", "isolated", 100, top1=50.0, ts="2026-01-01T00:00:00")]},
            {"revs": [_exp("iso100", "isolated", 100, top1=61.5, ts="2026-02-01T00:00:00")]},
            {"revs": [_exp("cont1000", "continuous", 1000, wer=44.4)]},
        ]},
    ]  # fmt: skip
    runs = tables.collect(show)
    assert set(runs) == {"isolated-100", "continuous-1000"}
    assert runs["isolated-100"]["experiment"] == "iso100"
    assert runs["isolated-100"]["pose2gloss"]["test"]["top1"] == 61.5
    text = "\n".join(tables.table5(runs))
    assert "| isolated, 100 glosses | Top-1 | 61.50 | — | 68.02 | iso100 |" in text
    assert "| continuous, 1000 glosses | WER | 44.40 | — | 18.60 | cont1000 |" in text
    assert "not run (`-S corpus.synthetic.task=isolated -S corpus.synthetic.n_glosses=300`)" in text


def test_render_puts_our_numbers_beside_the_paper(tmp_path):
    split = {"bleu": 41.234, "top5": 77.0, "best": 100.0, "wer": 22.5}
    (tmp_path / "pose2gloss.json").write_text(
        json.dumps({"test": split, "test_unseen": {**split, "wer": 30.0}, "decoding": {"temperature": 0.3}})
    )
    (tmp_path / "corpus.json").write_text(json.dumps({"n_glosses": 100, "utterances": {"test": 60}}))
    text = tables.render(tmp_path)
    assert "| Pose2Gloss | test | 41.23 | 77.00 | 100.00 | 22.50 | 10.60 | 23.42 | 76.13 |" in text
    assert "| Pose2Gloss | test_unseen | 41.23 | 77.00 | 100.00 | 30.00 |" in text
    assert "| Video2Gloss | test | not run |" in text
    assert "temperature 0.3" in text and "100 glosses" in text
    assert "Video2Gloss: ctc_weight" not in text  # no Video2Gloss evaluation yet


def test_render_names_a_per_model_ctc_weight(tmp_path):
    split = {"bleu": 41.0, "top5": 77.0, "best": 100.0, "wer": 22.5}
    for model, weight in (("pose2gloss", 0.5), ("video2gloss", 0.8)):
        (tmp_path / f"{model}.json").write_text(json.dumps({"test": split, "decoding": {"ctc_weight": weight}}))
    assert "ctc_weight 0.5 (Video2Gloss: ctc_weight 0.8)" in tables.render(tmp_path)


def test_ablation_table_lists_changed_params_and_val_wer():
    def exp(name, rev, p2g, wer):
        return {"rev": rev, "name": name, "data": {
            "timestamp": None, "params": {"params.yaml": {"data": {"seed": 1, "pose2gloss": p2g}}},
            "metrics": {"metrics/pose2gloss_train.json": {"data": {"best_val_wer": wer}}}}}  # fmt: skip

    base = {"diffusion": True, "losses": {"text": True, "ctc": True}}
    show = [{**exp(None, "workspace", base, 29.6), "experiments": [
        {"revs": [exp("abl-no-ctc", "r1", {**base, "losses": {"text": True, "ctc": False}}, 31.0)]},
        {"revs": [exp("abl-diffusion", "r2", {**base, "diffusion": False}, 27.4)]},
        {"revs": [exp("other", "r3", {**base, "diffusion": False}, 1.0)]},
    ]}]  # fmt: skip
    lines = tables.ablation_table(show)
    assert lines[2] == "| defaults (workspace) | — | 29.60 |"
    assert lines[3] == "| abl-diffusion | `pose2gloss.diffusion=false` | 27.40 |"
    assert lines[4] == "| abl-no-ctc | `pose2gloss.losses.ctc=false` | 31.00 |"
    assert len(lines) == 5  # experiments without the prefix are left out
