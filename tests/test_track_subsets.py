"""The `tracks` stage's arithmetic: WER with its standard error, and the bound against the specialists."""

from __future__ import annotations

import math

import pytest

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
