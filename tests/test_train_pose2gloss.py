"""Stage I training: schedules, bucketing, data refusal, kill-and-resume equality."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import zarr

import extractors
from pipeline import extract
from pipeline.data import FeatureStoreError, bucket_batches, load_split
from pipeline.fuse import fuse
from pipeline.train_pose2gloss import configs_from_params, lr_lambda, train
from pipeline.vocab import Vocab

TINY_MODEL = dict(d_track=16, unified_dim=32, unet_channels=[8, 16], d_model=32, n_decoder_layers=1,
                  n_decoder_heads=2, n_fusion_heads=2, batch_size=8, epochs=2, checkpoint_every=1)  # fmt: skip


@pytest.fixture(scope="module")
def features(small_corpus, tmp_path_factory):
    _, corpus, _ = small_corpus
    out = tmp_path_factory.mktemp("features")
    for t in extractors.TRACK_ORDER:
        extract.extract_track(t, corpus, out / "tracks", seed=1, workers=1)
    fuse(corpus, out / "tracks", out / "features.zarr")
    return corpus, out / "features.zarr"


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    total, warmup = 100, 10
    lrs = [lr_lambda(s, total, warmup, 0.05) for s in range(total + 1)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[-1] == pytest.approx(0.05)


def test_bucketing_groups_similar_lengths_and_covers_everything():
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 200, 500).tolist()
    batches = bucket_batches(lengths, 16, np.random.default_rng(1))
    assert sorted(i for b in batches for i in b) == list(range(500))
    spread = np.mean([np.ptp([lengths[i] for i in b]) for b in batches if len(b) > 1])
    random_spread = np.mean([np.ptp(rng.choice(lengths, 16)) for _ in range(50)])
    assert spread < 0.3 * random_spread


def test_unknown_params_are_refused():
    with pytest.raises(ValueError, match="unknown keys"):
        configs_from_params({"learning_rate": 1e-3}, seed=0)
    model_cfg, train_cfg = configs_from_params({"diffusion": False, "tracks": ["dwpose"], "lr": 3e-4}, seed=5)
    assert not model_cfg.diffusion and train_cfg.tracks == ("dwpose",) and train_cfg.seed == 5


def test_single_track_loading_masks_the_others(features):
    corpus, store = features
    vocab = Vocab.load(corpus / "vocab.json")
    data = load_split(store, corpus, vocab, "train", tracks=("dwpose",))
    assert data and all(not u.track_mask[:, [0, 2, 3, 4]].any() for u in data)
    a, b = extractors.fused_slices()["sapiens"]
    assert all(not u.features[:, a:b].any() for u in data)
    with pytest.raises(ValueError, match="unknown tracks"):
        load_split(store, corpus, vocab, "train", tracks=("openpose",))


def test_nan_or_wrong_width_feature_stores_are_refused(features, tmp_path):
    corpus, store = features
    vocab = Vocab.load(corpus / "vocab.json")
    bad = tmp_path / "bad.zarr"
    shutil.copytree(store, bad)
    group = zarr.open_group(str(bad), mode="r+")
    values = group["values"]
    values[3, 10] = np.nan
    with pytest.raises(FeatureStoreError, match="NaN"):
        load_split(bad, corpus, vocab, "train")
    group.attrs["dims"] = 1958
    with pytest.raises(FeatureStoreError, match="1959"):
        load_split(bad, corpus, vocab, "train")


def test_kill_and_resume_gives_the_same_weights(features, tmp_path):
    corpus, store = features
    params = dict(TINY_MODEL)
    m1, t1 = configs_from_params(params, seed=3)
    whole = train(m1, t1, store, corpus, tmp_path / "whole", live_dir=tmp_path / "live")
    m2, t2 = configs_from_params(params, seed=3)
    stopped = train(m2, t2, store, corpus, tmp_path / "resumed", max_steps=3)  # "killed" after 3 steps
    assert stopped == {"stopped_at_step": 3}
    m3, t3 = configs_from_params(params, seed=3)
    train(m3, t3, store, corpus, tmp_path / "resumed")
    a = torch.load(tmp_path / "whole/last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "resumed/last.pt", weights_only=False)["model"]
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    for name in ("q25.pt", "q50.pt", "q75.pt", "q100.pt", "best.pt"):
        assert (tmp_path / "whole" / name).exists()
    assert whole["steps"] > 3 and np.isfinite(whole["best_val_wer"])
    curve = (tmp_path / "live/plots/metrics/val/wer.tsv").read_text().splitlines()
    assert len(curve) == 1 + t1.epochs  # header + one validation WER per epoch, for `dvc plots show`
    assert (tmp_path / "live/plots/metrics/train/text.tsv").exists()
