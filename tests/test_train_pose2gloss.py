"""Stage I training: schedules, bucketing, data refusal, kill-and-resume equality."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest
import torch
import zarr

from pipeline import scoring, train_pose2gloss
from pipeline.checkpoints import load_model
from pipeline.corpus.manifest import read_manifest
from pipeline.data import (
    FeatureStoreError,
    Utterance,
    augment,
    bucket_batches,
    collate,
    keep_one_track,
    load_split,
)
from pipeline.decoding import DecodeConfig
from pipeline.evaluate import evaluate_pose2gloss
from pipeline.layout import FUSED
from pipeline.nets.pose2gloss import Pose2Gloss, make_schedulers, shift_right
from pipeline.store import FrameStore
from pipeline.train_pose2gloss import configs_from_params, train, training_losses
from pipeline.training import lr_lambda
from pipeline.vocab import EOS, PAD, Vocab

TINY_MODEL = dict(d_track=16, unified_dim=32, unet_channels=[8, 16], d_model=32, n_decoder_layers=1,
                  n_decoder_heads=2, n_fusion_heads=2, batch_size=8, epochs=2, checkpoint_every=1)  # fmt: skip


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
    a, b = FUSED.slices["sapiens"]
    assert all(not u.features[:, a:b].any() for u in data)
    with pytest.raises(ValueError, match="unknown tracks"):
        load_split(store, corpus, vocab, "train", tracks=("openpose",))


@pytest.mark.parametrize(("tracks", "stride", "max_frames"), [(None, 2, 9), (("dwpose", "sapiens"), 3, 1024)])
def test_load_split_values_are_the_store_normalised_by_train_statistics_and_masked(features, tracks, stride,
                                                                                   max_frames):  # fmt: skip
    corpus, store_path = features
    vocab = Vocab.load(corpus / "vocab.json")
    store, manifest = FrameStore(store_path), read_manifest(corpus)
    mean, std = (np.asarray(store.attrs[k], np.float64) for k in ("norm_mean", "norm_std"))
    data = load_split(store_path, corpus, vocab, "val", tracks=tracks, frame_stride=stride, max_frames=max_frames)
    val = manifest[manifest.split == "val"]
    assert [u.utt_id for u in data] == val.utt_id.tolist() and len(data) > 2
    use = np.array([tracks is None or t in tracks for t in FUSED.tracks])
    truncated = 0
    for u, glosses in zip(data, val.glosses):
        raw = store.read(u.utt_id)[::stride][:max_frames].astype(np.float64)
        mask = store.read(u.utt_id, "mask")[::stride][:max_frames] & use
        truncated += len(store.read(u.utt_id)[::stride]) > max_frames
        np.testing.assert_array_equal(u.track_mask, mask)
        expected = (raw - mean) / std * np.repeat(mask, FUSED.dims, axis=1)
        np.testing.assert_allclose(u.features, expected, rtol=1e-5, atol=1e-5)
        assert u.glosses == glosses and u.target.tolist() == vocab.encode(glosses) + [EOS]
    assert truncated == (len(data) if max_frames < 10 else 0)  # max_frames cuts every utterance, or none
    present = np.concatenate([u.features[:, np.repeat(u.track_mask.any(0), FUSED.dims)] for u in data])
    assert abs(present.mean()) < 0.3 and 0.3 < present.std() < 3  # unit scale, as the model expects


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
    params = dict(TINY_MODEL, aug_speed=[0.8, 1.2], aug_noise=0.1, aug_track_subsets=[0.2, 0.6])  # resumed RNG too
    m1, t1 = configs_from_params(params, seed=3)
    whole = train(m1, t1, store, corpus, tmp_path / "whole", live_dir=tmp_path / "live")
    m2, t2 = configs_from_params(params, seed=3)
    work = tmp_path / "work"
    stopped = train(m2, t2, store, corpus, tmp_path / "resumed", max_steps=3, work_dir=work)  # "killed"
    assert stopped == {"stopped_at_step": 3} and (work / "last.pt").exists()
    shutil.rmtree(tmp_path / "resumed", ignore_errors=True)  # DVC deletes a stage's outputs before rerunning it
    m3, t3 = configs_from_params(params, seed=3)
    train(m3, t3, store, corpus, tmp_path / "resumed", work_dir=work)
    published = sorted(p.name for p in (tmp_path / "resumed").iterdir())
    assert published == sorted(
        f"{n}{ext}" for n in ("best", "q25", "q50", "q75", "q100") for ext in (".json", ".safetensors")
    )
    assert not list((tmp_path / "resumed").glob("*.pt"))  # work state (optimiser, fingerprint) is never published
    a = torch.load(tmp_path / "whole/last.pt", weights_only=True)["model"]
    b = torch.load(work / "last.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    for name in published:  # bitwise the same published files
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "resumed" / name).read_bytes()
    history = torch.load(tmp_path / "whole/last.pt", weights_only=True)["state"]["history"]
    assert whole["steps"] == t1.epochs * 4  # 28 train utterances, batches of 8
    assert len(history) == t1.epochs and whole["best_val_wer"] == min(r["val/wer"] for r in history)
    curve = (tmp_path / "live/plots/metrics/val/wer.tsv").read_text().splitlines()
    assert len(curve) == 1 + t1.epochs  # header + one validation WER per epoch, for `dvc plots show`
    assert (tmp_path / "live/plots/metrics/train/text.tsv").exists()


def test_the_solo_phase_trains_only_the_solo_encoders_and_resumes_bitwise(features, tmp_path):
    corpus, store = features
    params = dict(TINY_MODEL, aug_track_subsets=[0.2, 0.6], solo_epochs=2)
    m1, t1 = configs_from_params(params, seed=3)
    whole = train(m1, t1, store, corpus, tmp_path / "whole", live_dir=tmp_path / "live")
    assert whole["steps"] == 8 and whole["solo"]["steps"] == 8  # two epochs of four batches each
    json.dumps(whole, allow_nan=False)  # the stage's metrics file is strict JSON (nothing validated: no infinity)
    first = (tmp_path / "whole/best.safetensors").read_bytes()
    m0, t0 = configs_from_params(params, seed=3)
    train(m0, t0, store, corpus, tmp_path / "whole")  # run again where it lives: both phases found finished
    assert (tmp_path / "whole/best.safetensors").read_bytes() == first
    m2, t2 = configs_from_params(params, seed=3)
    work = tmp_path / "work"
    stopped = train(m2, t2, store, corpus, tmp_path / "resumed", max_steps=11, work_dir=work)  # killed: solo phase
    assert stopped == {"stopped_at_step": 3} and (work / "solo/last.pt").exists()
    shutil.rmtree(tmp_path / "resumed")
    m3, t3 = configs_from_params(params, seed=3)
    train(m3, t3, store, corpus, tmp_path / "resumed", work_dir=work)
    for name in ("best.safetensors", "best.json", "q100.safetensors"):
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "resumed" / name).read_bytes()
    published, _ = load_model(tmp_path / "resumed/best")
    before, _ = load_model(work / "best")  # the main phase's best
    solo = {k for k in published if k.startswith("encoders.solo.")}
    assert solo and published.keys() - solo == before.keys()
    for k in before:  # frozen bit for bit
        torch.testing.assert_close(published[k], before[k], rtol=0, atol=0)
    trained = [k for k in solo if not torch.equal(published[k], before[k.replace(".solo.", ".encoders.")])]
    assert {k.split(".")[2] for k in trained} == {str(i) for i in range(5)}  # every track's solo encoder learned
    model = Pose2Gloss.from_checkpoint(tmp_path / "resumed/best")
    assert model.cfg.solo_encoders and model.encoders.solo is not None
    assert not Pose2Gloss.from_checkpoint(tmp_path / "resumed/q100").cfg.solo_encoders  # the main phase's quarters
    curve = (tmp_path / "live/solo/plots/metrics/train/text.tsv").read_text().splitlines()
    assert len(curve) == 1 + 2 and (tmp_path / "live/plots/metrics/val/wer.tsv").exists()


def test_a_one_track_model_has_no_solo_phase(features, tmp_path):
    corpus, store = features
    m, t = configs_from_params(dict(TINY_MODEL, epochs=1, tracks=["dwpose"], solo_epochs=2), seed=3)
    summary = train(m, t, store, corpus, tmp_path / "one")
    assert "solo" not in summary and not Pose2Gloss.from_checkpoint(tmp_path / "one/best").cfg.solo_encoders


def test_a_resumed_run_reports_the_training_time_of_all_its_processes(features, tmp_path):
    corpus, store = features
    m, t = configs_from_params(dict(TINY_MODEL, epochs=1), seed=3)
    work = tmp_path / "work"
    assert train(m, t, store, corpus, tmp_path / "out", max_steps=2, work_dir=work) == {"stopped_at_step": 2}
    ck = torch.load(work / "last.pt", weights_only=True)
    assert ck["state"]["seconds"] > 0  # the killed process's time, up to its checkpoint
    ck["state"]["seconds"] = 1000.0  # as if the killed process had trained for 1000 s
    torch.save(ck, work / "last.pt")
    started = time.perf_counter()
    m, t = configs_from_params(dict(TINY_MODEL, epochs=1), seed=3)
    summary = train(m, t, store, corpus, tmp_path / "out", work_dir=work)
    assert 1000.0 <= summary["train_seconds"] <= 1000.0 + time.perf_counter() - started + 0.1


def test_a_checkpoint_from_other_params_is_not_resumed(features, tmp_path, capsys):
    corpus, store = features
    m1, t1 = configs_from_params(dict(TINY_MODEL), seed=3)
    assert train(m1, t1, store, corpus, tmp_path / "out", max_steps=2) == {"stopped_at_step": 2}
    m2, t2 = configs_from_params(dict(TINY_MODEL, lr=3e-4), seed=3)
    summary = train(m2, t2, store, corpus, tmp_path / "out")
    assert "starting afresh" in capsys.readouterr().out
    m3, t3 = configs_from_params(dict(TINY_MODEL, lr=3e-4), seed=3)
    fresh = train(m3, t3, store, corpus, tmp_path / "fresh")
    assert summary["steps"] == fresh["steps"]
    a = torch.load(tmp_path / "out/last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "fresh/last.pt", weights_only=True)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_best_holds_the_weights_of_the_lowest_validation_wer_and_the_quarters_their_steps(features, tmp_path,
                                                                                          monkeypatch):  # fmt: skip
    corpus, store = features
    scripted = iter([70.0, 40.0, 55.0, 40.0])  # epoch 2 is best; epoch 4 only ties it
    snapshots = []

    def validation_wer(model, data, vocab, device):
        snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})  # the epoch's weights
        return next(scripted)

    monkeypatch.setattr(train_pose2gloss, "validation_wer", validation_wer)
    m, t = configs_from_params(dict(TINY_MODEL, epochs=4), seed=3)
    summary = train(m, t, store, corpus, tmp_path / "out", work_dir=tmp_path / "work")
    history = torch.load(tmp_path / "work/last.pt", weights_only=True)["state"]["history"]
    assert [r["val/wer"] for r in history] == [70.0, 40.0, 55.0, 40.0]
    assert summary["best_val_wer"] == 40.0 and summary["final"]["val/wer"] == 40.0
    assert summary["steps"] == 16  # 28 train utterances in batches of 8, 4 epochs: a quarter is one epoch

    def published(name: str) -> dict[str, torch.Tensor]:
        return load_model(tmp_path / "out" / name)[0]

    def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
        return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    assert same(published("best"), snapshots[1]) and not same(published("best"), snapshots[3])
    for q, epoch in (("q25", 0), ("q50", 1), ("q75", 2), ("q100", 3)):
        assert same(published(q), snapshots[epoch]), q
    assert same(published("q100"), torch.load(tmp_path / "work/last.pt", weights_only=True)["model"])


def test_the_trained_text_loss_is_label_smoothed_cross_entropy(features):
    corpus, store = features
    vocab = Vocab.load(corpus / "vocab.json")
    m, cfg = configs_from_params(dict(TINY_MODEL, dropout=0.0, teacher_forcing=[1.0, 1.0]), seed=0)
    assert cfg.label_smoothing == 0.1  # Table 2
    m.vocab_size, m.track_dims = len(vocab), FUSED.dims
    torch.manual_seed(0)
    model = Pose2Gloss(m).eval()
    batch = collate(load_split(store, corpus, vocab, "train", frame_stride=2, max_frames=64)[:4])
    sched, _ = make_schedulers(m)
    losses = training_losses(model, batch, cfg, 0.5, sched, torch.Generator().manual_seed(0))
    with torch.no_grad():
        _, z0 = model.encode(batch["features"], batch["track_mask"])
        logp = model(shift_right(batch["targets"]), z0, batch["frame_pad"]).double().log_softmax(-1)
    targets = batch["targets"]
    real = targets != PAD
    nll = -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)[real]
    uniform = -logp.mean(-1)[real]  # smoothing spreads 0.1 evenly over all classes
    expected = (0.9 * nll + 0.1 * uniform).mean().item()
    assert losses["text"].item() == pytest.approx(expected, rel=1e-5)
    assert abs(expected - nll.mean().item()) > 1e-3  # the smoothing is visible at this size


def _utterance(T=40, seed=0) -> Utterance:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, FUSED.width)).astype(np.float32)
    m = np.ones((T, len(FUSED.tracks)), bool)
    m[5:9, 1] = False  # dwpose lost for a few frames
    x[5:9, 165:549] = 0
    return Utterance("u", x, m, np.array([4, 5, 2]), "A B")


def test_collate_pads_each_utterance_after_its_own_frames_and_glosses():
    short, long = _utterance(T=5, seed=1), _utterance(T=9, seed=2)
    long.target = np.array([6, 7, 8, EOS])
    b = collate([short, long])
    assert b["features"].shape == (2, 9, FUSED.width) and b["track_mask"].shape == (2, 9, 5)
    np.testing.assert_array_equal(b["features"][0, :5].numpy(), short.features)
    np.testing.assert_array_equal(b["features"][1].numpy(), long.features)
    assert not b["features"][0, 5:].any() and not b["track_mask"][0, 5:].any()
    np.testing.assert_array_equal(b["track_mask"][1].numpy(), long.track_mask)
    assert b["frame_pad"].tolist() == [[False] * 5 + [True] * 4, [False] * 9]
    assert b["targets"].tolist() == [[4, 5, EOS, PAD], [6, 7, 8, EOS]]


def test_augment_resamples_speed_and_keeps_the_original():
    u = _utterance()
    before = u.features.copy()
    fast = augment(u, np.random.default_rng(0), FUSED.dims, speed=(2.0, 2.0))
    slow = augment(u, np.random.default_rng(0), FUSED.dims, speed=(0.5, 0.5))
    assert len(fast.features) == 20 and len(slow.features) == 80
    np.testing.assert_array_equal(fast.features[0], u.features[0])
    np.testing.assert_array_equal(fast.features[-1], u.features[-1])
    np.testing.assert_array_equal(slow.features[::2][:3], u.features[:3])  # each frame shown twice
    np.testing.assert_array_equal(u.features, before)
    assert fast.glosses == u.glosses and fast.target is u.target


def test_augment_track_subsets_cover_every_subset_size_and_keep_at_least_one():
    u = _utterance()
    dims = np.array(FUSED.dims)
    assert u.track_mask.any(0).all()  # all five present
    sizes, singles = [], set()
    for seed in range(400):
        a = augment(u, np.random.default_rng(seed), FUSED.dims, track_subset=1.0)
        kept = a.track_mask.any(0)
        assert 1 <= kept.sum() <= 4  # never all five, never none
        np.testing.assert_array_equal(a.track_mask[:, kept], u.track_mask[:, kept])  # whole tracks kept or dropped
        np.testing.assert_array_equal(a.features != 0, np.repeat(a.track_mask, dims, axis=1) & (u.features != 0))
        sizes.append(int(kept.sum()))
        if kept.sum() == 1:
            singles.add(int(np.flatnonzero(kept)[0]))
    counts = np.bincount(sizes, minlength=5)[1:]
    assert 160 < counts[0] < 240 and counts[1:].min() > 40  # one track alone half the time; sizes 2-4 a sixth each
    assert singles == set(range(5))
    unchanged = augment(u, np.random.default_rng(0), FUSED.dims, track_subset=0.0)
    np.testing.assert_array_equal(unchanged.track_mask, u.track_mask)
    half = [augment(u, np.random.default_rng(s), FUSED.dims, track_subset=0.5).track_mask.any(0).all()
            for s in range(400)]  # fmt: skip
    assert 150 < sum(half) < 250  # about half the utterances keep all their tracks


def test_keep_one_track_keeps_one_present_track_whole_and_draws_each():
    u = _utterance()
    u.track_mask[:, 2] = False  # mediapipe absent: never drawn
    u.track_mask[5:9, 0] = False  # smplerx lost for some frames: they stay lost
    dims = np.array(FUSED.dims)
    drawn = []
    for seed in range(100):
        a = keep_one_track(u, np.random.default_rng(seed), FUSED.dims)
        (k,) = np.flatnonzero(a.track_mask.any(0))
        np.testing.assert_array_equal(a.track_mask[:, k], u.track_mask[:, k])
        np.testing.assert_array_equal(a.features, u.features * np.repeat(a.track_mask, dims, axis=1))
        drawn.append(int(k))
    assert set(drawn) == {0, 1, 3, 4} and min(np.bincount(drawn)[[0, 1, 3, 4]]) > 10


def test_augment_noise_only_touches_present_values():
    u = _utterance()
    a = augment(u, np.random.default_rng(0), FUSED.dims, noise=0.5)
    present = np.repeat(u.track_mask, FUSED.dims, axis=1)
    diff = a.features - u.features
    assert np.all(diff[~present] == 0)
    assert 0.45 < diff[present].std() < 0.55


def test_joint_ctc_decoding_needs_a_trained_ctc_head(features, tmp_path):
    corpus, store = features
    joint = DecodeConfig(beam_size=2, ctc_weight=0.5, max_len=8)
    m, t = configs_from_params(dict(TINY_MODEL, epochs=1), seed=3)
    train(m, t, store, corpus, tmp_path / "with")
    model = Pose2Gloss.from_checkpoint(tmp_path / "with/best")
    assert model.ctc_trained
    metrics, table = evaluate_pose2gloss(tmp_path / "with/best", store, corpus, joint, splits=("test",))
    manifest = read_manifest(corpus)
    assert sorted(table.utt_id) == sorted(manifest.utt_id[manifest.split == "test"])
    assert metrics["test"]["utterances"] == len(table) == (manifest.split == "test").sum()
    m, t = configs_from_params(dict(TINY_MODEL, epochs=1, losses={"ctc": False}), seed=3)
    train(m, t, store, corpus, tmp_path / "without")
    model = Pose2Gloss.from_checkpoint(tmp_path / "without/q100.safetensors")  # the quarter checkpoints know it too
    assert not model.ctc_trained
    u = load_split(store, corpus, Vocab.load(corpus / "vocab.json"), "test", **model.data_options)[:2]
    b = collate(u)
    assert model.inference(b["features"], b["track_mask"], b["frame_pad"])[1] is None
    with pytest.raises(ValueError, match="decoding.ctc_weight=0"):
        evaluate_pose2gloss(tmp_path / "without/best", store, corpus, joint, splits=("test",))
    plain = DecodeConfig(beam_size=2, max_len=8)
    metrics, table = evaluate_pose2gloss(tmp_path / "without/best", store, corpus, plain, splits=("test",))
    assert metrics["test"]["wer"] == scoring.wer(table.reference.tolist(), table.hypothesis.tolist())["wer"]
