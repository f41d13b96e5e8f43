"""The `tracks` stage's arithmetic: WER with its standard error, and the bound against the specialists."""

from __future__ import annotations

import math

import pytest

from pipeline import specialists
from pipeline.layout import TRACK_ORDER
from pipeline.track_subsets import compare, subsets, table, wer_with_error


def test_wer_and_its_standard_error_by_hand():
    refs, hyps = ["A B", "C D E F", "G H"], ["A B", "C X E", "Y"]
    # errors 0, 2 (1 sub + 1 del), 2 (1 sub + 1 del) in 2, 4, 2 glosses: WER 4 / 8
    out = wer_with_error(refs, hyps)
    spread = (0 - 0.5 * 2) ** 2 + (2 - 0.5 * 4) ** 2 + (2 - 0.5 * 2) ** 2  # 1 + 0 + 1
    assert out["wer"] == 50.0 and out["utterances"] == 3
    assert out["wer_se"] == pytest.approx(round(100 * math.sqrt(3 / 2 * spread) / 8, 2))


def test_the_bound_per_subset():
    names = list(subsets())
    assert len(names) == 11 and names[0] == "all five"
    default = {
        "all five": {"wer": 27.0, "wer_se": 2.0},
        "only dwpose": {"wer": 61.0, "wer_se": 2.0},
        "only smplerx": {"wer": 30.0, "wer_se": 2.0},
        "without sapiens": {"wer": 20.0, "wer_se": 2.0},
    }
    specialists = {
        "subsets": {
            "all five": {"wer": 25.0, "wer_se": 2.5},
            "only dwpose": {"wer": 50.0, "wer_se": 2.0},
            "only smplerx": {"wer": 26.0, "wer_se": 2.0},
        }
    }
    rows = compare(default, specialists)
    assert rows["all five"]["within_bound"]  # 2 points worse, one SE is 2.5
    assert not rows["only dwpose"]["within_bound"] and rows["only dwpose"]["ratio"] == 1.22
    assert rows["only smplerx"]["within_bound"]
    assert "within_bound" not in rows["without sapiens"] and "not trained" in table(rows)
    better = compare({"all five": {"wer": 20.0, "wer_se": 2.0}}, specialists)["all five"]
    assert better["within_bound"]  # better than the specialist by more than one SE is no loss
    edge = compare({"only dwpose": {"wer": 61.43, "wer_se": 2.0}}, {"subsets": {"only dwpose": {"wer": 51.19}}})
    assert edge["only dwpose"]["ratio"] == 1.2 and not edge["only dwpose"]["within_bound"]  # 1.20004: over, unrounded


def test_specialists_train_each_subset_alone_without_subset_training_and_resume(tmp_path, monkeypatch):
    trained = []

    def fake_train(model_cfg, train_cfg, features, corpus, folder, work_dir=None):
        trained.append(train_cfg)
        return {"train_seconds": 1.0, "best_val_wer": 50.0}

    monkeypatch.setattr(specialists, "train", fake_train)
    monkeypatch.setattr(specialists, "features_fingerprint", lambda features: "f1")
    monkeypatch.setattr(specialists.Pose2Gloss, "from_checkpoint", classmethod(lambda cls, path: None))
    monkeypatch.setattr(specialists, "evaluate_subset", lambda *a: {"wer": 30.0, "wer_se": 2.0, "utterances": 60})
    params = {"seed": 5, "pose2gloss": {"epochs": 3, "aug_track_subsets": [0.2, 0.9], "solo_epochs": 30}}
    out = tmp_path / "specialists.json"
    specialists.train_specialists(params, "f", "c", tmp_path / "models", out, only=["only dwpose", "all five"])
    assert [c.tracks for c in trained] == [tuple(TRACK_ORDER), ("dwpose",)]
    assert all(c.aug_track_subsets == (0.0, 0.0) and c.solo_epochs == 0 and c.epochs == 3 and c.seed == 5
               for c in trained)  # fmt: skip
    report = specialists.train_specialists(params, "f", "c", tmp_path / "models", out, only=["all five"])
    assert len(trained) == 2 and sorted(report["subsets"]) == ["all five", "only dwpose"]  # done: not retrained
    params["pose2gloss"]["epochs"] = 4  # another recipe: nothing before is comparable
    report = specialists.train_specialists(params, "f", "c", tmp_path / "models", out, only=["all five"])
    assert len(trained) == 3 and sorted(report["subsets"]) == ["all five"]
    monkeypatch.setattr(specialists, "features_fingerprint", lambda features: "f2")  # other features: the same
    report = specialists.train_specialists(params, "f", "c", tmp_path / "models", out, only=["only dwpose"])
    assert len(trained) == 4 and sorted(report["subsets"]) == ["only dwpose"]
