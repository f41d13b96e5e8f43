"""The evaluate stage's parts that do not need a trained model."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.evaluate import decode_config, most_frequent_sequence_baseline, per_utterance, split_metrics


def test_decode_config_takes_the_top_level_temperature_and_refuses_unknown_keys():
    cfg = decode_config({"temperature": 0.3, "seed": 9, "decoding": {"beam_size": 3, "batch_size": 8}})
    assert (cfg.temperature, cfg.seed, cfg.beam_size, cfg.strategy) == (0.3, 9, 3, "beam")
    with pytest.raises(ValueError, match="unknown keys"):
        decode_config({"decoding": {"beams": 3}})


def test_decode_config_takes_one_ctc_weight_or_one_per_model():
    assert decode_config({"decoding": {"ctc_weight": 0.4}}, "video2gloss").ctc_weight == 0.4
    per_model = {"decoding": {"ctc_weight": {"pose2gloss": 0.5, "video2gloss": 0.8}}}
    assert decode_config(per_model).ctc_weight == 0.5  # pose2gloss unless told
    assert decode_config(per_model, "video2gloss").ctc_weight == 0.8
    with pytest.raises(ValueError, match="decoding.ctc_weight.video2gloss"):
        decode_config({"decoding": {"ctc_weight": {"pose2gloss": 0.5}}}, "video2gloss")
    with pytest.raises(ValueError, match="unknown models"):
        decode_config({"decoding": {"ctc_weight": {"pose2gloss": 0.5, "video2pose": 0.8}}})


def test_split_metrics_and_per_utterance_rows():
    rec = {"utt_id": ["a", "b"], "references": ["#IF POSS-1p", "DATE/DESSERT EACH+ONE X"],
           "hypotheses": ["#IF POSS-1p", "DATE/DESSERT"], "top1": (3, 5), "top5": (5, 5)}  # fmt: skip
    m = split_metrics(rec)
    assert m["wer"] == pytest.approx(40.0) and m["deletions"] == 2
    assert (m["top1"], m["top5"], m["utterances"]) == (60.0, 100.0, 2)
    assert m["best"] == pytest.approx(100.0)
    rows = per_utterance(rec, "test", {"a": "s01"})
    assert isinstance(rows, pd.DataFrame) and list(rows.signer) == ["s01", ""]
    assert list(rows.wer) == [0.0, pytest.approx(66.667, abs=1e-3)]
    assert rows.iloc[1].hypothesis == "DATE/DESSERT"


def test_most_frequent_sequence_baseline():
    manifest = pd.DataFrame({
        "split": ["train", "train", "train", "test", "test"],
        "glosses": ["A B", "C", "A B", "A B", "D E F G"],
    })  # fmt: skip
    out = most_frequent_sequence_baseline(manifest, ("test",))
    assert out["sequence"] == "A B"
    # "A B" vs "A B": 0 errors; vs "D E F G": 2 substitutions + 2 deletions -> 4 / 6 glosses
    assert out["test"]["wer"] == pytest.approx(400 / 6)
    assert out["test"]["bleu"] == pytest.approx(50.0)
