"""The evaluate stage's parts that do not need a trained model."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.recognition import decode_config, most_frequent_sequence_baseline, per_utterance, split_metrics


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


def test_the_temperature_ablation_computes_each_batch_memory_once_and_decodes_as_if_afresh():
    import dataclasses

    import numpy as np
    import torch

    from pipeline.data import Utterance
    from pipeline.decoding import DecodeConfig
    from pipeline.nets.pose2gloss import Pose2Gloss, Pose2GlossConfig
    from pipeline.recognition import pose2gloss_memory, recognize
    from pipeline.temperature_ablation import reused
    from pipeline.vocab import EOS, Vocab

    vocab = Vocab(tuple(f"G{i}" for i in range(12)))
    torch.manual_seed(0)
    model = Pose2Gloss(Pose2GlossConfig(vocab_size=len(vocab), d_track=16, unified_dim=32, unet_channels=(8, 16),
                                        d_model=32, n_decoder_layers=1, n_decoder_heads=2, n_fusion_heads=2,
                                        max_len=8, inference_steps=3)).eval()  # fmt: skip
    rng = np.random.default_rng(0)
    data = [Utterance(f"u{i}", rng.normal(size=(10 + 3 * i, 1959)).astype(np.float32), np.ones((10 + 3 * i, 5), bool),
                      np.array([4 + i, 5, EOS]), f"G{i} G1") for i in range(5)]  # fmt: skip
    calls = []
    fresh = pose2gloss_memory(model)

    def counted(items, gen):
        calls.append(tuple(u.utt_id for u in items))
        return fresh(items, gen)

    memory_fn = reused(counted)
    base = DecodeConfig(beam_size=2, max_len=6, ctc_weight=0.5, seed=7)
    for t in (0.1, 0.7):
        dcfg = dataclasses.replace(base, temperature=t)
        kept = recognize(model, memory_fn, data, vocab, dcfg, batch_size=2, topk=False)
        afresh = recognize(model, fresh, data, vocab, dcfg, batch_size=2, topk=False)
        assert kept["hypotheses"] == afresh["hypotheses"]
    assert sorted(calls) == sorted(set(calls)) and len(calls) == 3  # 5 utterances in batches of 2: once each


def test_top_k_counts_a_skipped_utterance_as_misses_like_wer(tmp_path):
    """An unreadable test video is scored as an empty hypothesis: its glosses are WER deletions and Top-k misses, so
    dropping videos can never raise Top-k (it used to be computed over the readable utterances only)."""
    import numpy as np
    import torch

    from pipeline.data import Utterance
    from pipeline.decoding import DecodeConfig
    from pipeline.nets.pose2gloss import Pose2Gloss, Pose2GlossConfig
    from pipeline.recognition import pose2gloss_memory, recognize, score_splits
    from pipeline.vocab import EOS, Vocab

    vocab = Vocab(tuple(f"G{i}" for i in range(6)))
    vocab.save(tmp_path / "vocab.json")
    ids = {u: vocab.encode(g) + [EOS] for u, g in [("a", "G0 G1"), ("b", "G2"), ("c", "G3 G4 G5")]}
    manifest = pd.DataFrame({"utt_id": list(ids), "split": "test", "signer": "s1", "task": "continuous",
                             "glosses": ["G0 G1", "G2", "G3 G4 G5"], "n_frames": 12, "fps": 25.0,
                             "video": [f"videos/{u}.mp4" for u in ids]})  # fmt: skip
    manifest.to_parquet(tmp_path / "manifest.parquet")
    torch.manual_seed(0)
    model = Pose2Gloss(Pose2GlossConfig(vocab_size=len(vocab), d_track=8, unified_dim=16, unet_channels=(8,),
                                        d_model=16, n_decoder_layers=1, n_decoder_heads=2, n_fusion_heads=2,
                                        max_len=6, inference_steps=2)).eval()  # fmt: skip
    rng = np.random.default_rng(0)
    readable = [Utterance(u, rng.normal(size=(12, 1959)).astype(np.float32), np.ones((12, 5), bool), np.array(t),
                          vocab.decode(t[:-1])) for u, t in ids.items() if u != "c"]  # fmt: skip
    dcfg = DecodeConfig(beam_size=2, max_len=6, ctc_weight=0.0)
    alone = recognize(model, pose2gloss_memory(model), readable, vocab, dcfg)
    metrics, table = score_splits(model, lambda split: (readable, {"c": "unreadable"}), tmp_path, dcfg, ("test",))
    m = metrics["test"]
    assert alone["top5"][1] == 3 and m["skipped"] == {"c": "unreadable"}
    assert m["top5"] == pytest.approx(100 * alone["top5"][0] / 6)  # the 3 glosses of "c" are misses
    assert m["top1"] == pytest.approx(100 * alone["top1"][0] / 6)
    assert table.set_index("utt_id").loc["c", "hypothesis"] == "" and m["deletions"] >= 3


def test_decoding_longer_than_the_model_knows_stops_at_its_max_len():
    """`decoding.max_len` above the Stage I's own `max_len` (a model trained elsewhere) decodes within the model's
    positions instead of failing with an index error."""
    import numpy as np
    import torch

    from pipeline.data import Utterance
    from pipeline.decoding import DecodeConfig
    from pipeline.nets.pose2gloss import Pose2Gloss, Pose2GlossConfig
    from pipeline.recognition import nbest, pose2gloss_memory, recognize
    from pipeline.vocab import EOS, Vocab

    vocab = Vocab(tuple(f"G{i}" for i in range(6)))
    torch.manual_seed(0)
    model = Pose2Gloss(Pose2GlossConfig(vocab_size=len(vocab), d_track=8, unified_dim=16, unet_channels=(8,),
                                        d_model=16, n_decoder_layers=1, n_decoder_heads=2, n_fusion_heads=2,
                                        max_len=4, inference_steps=2)).eval()  # fmt: skip
    with torch.no_grad():  # rigged: the decoder's output is always all ones, where G0 scores 16 and EOS -160
        model.decoder.norm.weight.zero_()
        model.decoder.norm.bias.fill_(1.0)
        model.decoder.codebook.weight.zero_()
        model.decoder.codebook.weight[vocab.encode("G0")[0]] = 1.0
        model.decoder.codebook.weight[EOS] = -10.0
    rng = np.random.default_rng(0)
    data = [Utterance("u", rng.normal(size=(12, 1959)).astype(np.float32), np.ones((12, 5), bool),
                      np.array([4, EOS]), "G0")]  # fmt: skip
    for strategy in ("greedy", "beam"):
        dcfg = DecodeConfig(strategy=strategy, beam_size=2, max_len=64, ctc_weight=0.0, repetition_penalty=1.0)
        hyp = recognize(model, pose2gloss_memory(model), data, vocab, dcfg, topk=False)["hypotheses"][0]
        assert hyp == "G0 G0 G0 G0"  # the model's max_len (4) reached, not decoding.max_len (64)
    assert nbest(model, pose2gloss_memory(model), data, vocab, dcfg, k=1)[0][0][0] == "G0 G0 G0 G0"
