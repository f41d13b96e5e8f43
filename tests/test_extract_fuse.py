"""The extract and fuse stages: resume after a kill, skipped inputs, fused layout, train-only normalisation."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import extractors
from extractors import registry
from extractors.base import TrackFrames
from pipeline import extract
from pipeline.corpus.manifest import MANIFEST_SCHEMA, read_manifest
from pipeline.fuse import fuse
from pipeline.store import FrameStore


@pytest.fixture(scope="module")
def tracks(small_corpus, tmp_path_factory):
    """All five simulated tracks of the small corpus."""
    _, corpus, _ = small_corpus
    out = tmp_path_factory.mktemp("tracks")
    for t in extractors.TRACK_ORDER:
        extract.extract_track(t, corpus, out, seed=3, workers=2)
    return out


def test_every_track_store_matches_the_manifest(small_corpus, tracks):
    _, corpus, _ = small_corpus
    manifest = read_manifest(corpus)
    for t in extractors.TRACK_ORDER:
        store = FrameStore(tracks / f"{t}.zarr")
        store.check_ids(manifest["utt_id"].tolist())
        np.testing.assert_array_equal(store.lengths, manifest["n_frames"].to_numpy())
        assert store.attrs["backend"] == "simulated" and store.attrs["dims"] == extractors.LAYOUTS[t].dims
        assert store.attrs["dim_names"] == list(extractors.LAYOUTS[t].dim_names)
        assert np.isfinite(store.read_all()).all()
        assert not (tracks / f"{t}.zarr.parts").exists()


def test_a_killed_extraction_resumes_to_the_same_store(small_corpus, tmp_path, monkeypatch):
    _, corpus, _ = small_corpus
    monkeypatch.setattr(extract, "BATCH", 8)
    whole = extract.extract_track("dwpose", corpus, tmp_path / "whole", seed=3, workers=1)
    assert whole["resumed_batches"] == 0

    real = extract._run_batch
    calls = {"n": 0}

    def killed_after_two(batch):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt  # as if the stage were killed mid-run
        return real(batch)

    monkeypatch.setattr(extract, "_run_batch", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        extract.extract_track("dwpose", corpus, tmp_path / "resumed", seed=3, workers=1)
    assert not (tmp_path / "resumed/dwpose.zarr").exists()  # nothing a later stage could take as complete
    assert len(list((tmp_path / "resumed/dwpose.zarr.parts").glob("batch_*.npz"))) == 2

    monkeypatch.setattr(extract, "_run_batch", real)
    resumed = extract.extract_track("dwpose", corpus, tmp_path / "resumed", seed=3, workers=1)
    assert resumed["resumed_batches"] == 2
    a, b = FrameStore(tmp_path / "whole/dwpose.zarr"), FrameStore(tmp_path / "resumed/dwpose.zarr")
    assert a.utt_ids == b.utt_ids
    for name in ("values", "mask"):
        assert a.read_all(name).tobytes() == b.read_all(name).tobytes()


def test_parts_from_other_inputs_are_not_reused(small_corpus, tmp_path, monkeypatch):
    _, corpus, _ = small_corpus
    monkeypatch.setattr(extract, "BATCH", 8)
    real = extract._run_batch
    monkeypatch.setattr(extract, "_run_batch", lambda b: (_ for _ in ()).throw(KeyboardInterrupt) if b[0] else real(b))
    with pytest.raises(KeyboardInterrupt):
        extract.extract_track("smplerx", corpus, tmp_path, seed=3, workers=1)
    monkeypatch.setattr(extract, "_run_batch", real)
    report = extract.extract_track("smplerx", corpus, tmp_path, seed=4, workers=1)  # another seed: start over
    assert report["resumed_batches"] == 0


def test_corrupt_and_empty_videos_are_skipped_and_the_rest_completes(small_corpus, tmp_path):
    _, corpus, _ = small_corpus
    tiny = tmp_path / "corpus"
    shutil.copytree(corpus, tiny)
    manifest = read_manifest(tiny).iloc[:3]
    table = pa.Table.from_pandas(manifest, schema=MANIFEST_SCHEMA, preserve_index=False)
    pq.write_table(table, tiny / "manifest.parquet")
    (tiny / manifest.iloc[0].video).write_bytes(b"not a video at all" * 100)
    (tiny / manifest.iloc[1].video).write_bytes(b"")
    report = extract.extract_track("mediapipe", tiny, tmp_path / "tracks", backend="holistic", workers=1)
    assert [s["utt_id"] for s in report["skipped"]] == manifest["utt_id"].tolist()[:2]
    assert all(s["reason"] for s in report["skipped"])
    store = FrameStore(tmp_path / "tracks/mediapipe.zarr")
    assert store.utt_ids == manifest["utt_id"].tolist()
    np.testing.assert_array_equal(store.lengths, manifest["n_frames"].to_numpy())
    for u in manifest["utt_id"][:2]:
        assert not store.read(u, "mask").any() and not store.read(u).any()
    assert store.attrs["backend"] == "holistic" and store.attrs["skipped"] == report["skipped"]


def test_unknown_backends_and_missing_models_fail_clearly(small_corpus, tmp_path):
    _, corpus, _ = small_corpus
    with pytest.raises(ValueError, match=r"dwpose.backend 'openpose' is not a backend of dwpose; choose auto or"):
        extract.extract_track("dwpose", corpus, tmp_path, backend="openpose")
    with pytest.raises(ValueError, match="choose auto or one of"):
        extract.extract_track("sapiens", corpus, tmp_path, backend="holistic")
    with pytest.raises(ValueError, match="unknown track"):
        extract.extract_track("openpose", corpus, tmp_path)
    with pytest.raises(ValueError, match=r"dwpose.options: unknown keys \['nosie'\]"):
        extract.extract_track("dwpose", corpus, tmp_path, options={"nosie": 0.5})
    with pytest.raises(ValueError, match="dwpose.options.noise must be >= 0"):
        extract.extract_track("dwpose", corpus, tmp_path, options={"noise": -1})
    no_truth = tmp_path / "real"
    shutil.copytree(corpus, no_truth, ignore=shutil.ignore_patterns("skeleton.zarr"))
    # auto on a corpus without ground truth is the real backend, which needs its models
    with pytest.raises(ValueError, match=r"dwpose.options.detector: external/dwpose/yolox_l.onnx does not exist"):
        extract.extract_track("dwpose", no_truth, tmp_path)
    with pytest.raises(ValueError, match="needs the synthetic corpus' ground truth"):
        extract.extract_track("dwpose", no_truth, tmp_path, backend="simulated")
    assert not list(tmp_path.glob("*.zarr*"))  # refused before any work


@registry.register("sapiens", "toy-constant")
class ConstantParts(registry.Backend):
    """A toy backend: every cell of the map is class `label` (its one option); utterances of signer `fail` are
    unreadable."""

    options = {"label": 3, "fail": None}

    def __init__(self, options, corpus_dir, seed):
        super().__init__(options, corpus_dir, seed)
        self.label, self.fail = int(options["label"]), options["fail"]

    def extract(self, row, index):
        if row["signer"] == self.fail:
            raise OSError(f"cannot read {row['video']}")
        return TrackFrames(np.full((row["n_frames"], 576), self.label, np.float32), np.ones(row["n_frames"], bool))

    def version(self):
        return "toy 1.0"

    def weights_hash(self):
        return "0" * 64


def test_a_registered_backend_runs_through_extract_and_is_recorded(small_corpus, tmp_path):
    _, corpus, _ = small_corpus
    manifest = read_manifest(corpus)
    fail = manifest.signer.iloc[0]
    options = {"label": 5, "fail": fail, "noise": 1.0}  # noise: the simulated backend's, allowed beside
    report = extract.extract_track("sapiens", corpus, tmp_path, backend="toy-constant", workers=1, options=options)
    assert report["backend"] == "toy-constant" and report["backend_version"] == "toy 1.0"
    assert report["weights_sha256"] == "0" * 64
    assert {s["utt_id"] for s in report["skipped"]} == set(manifest.utt_id[manifest.signer == fail])
    store = FrameStore(tmp_path / "sapiens.zarr")
    assert store.attrs["backend"] == "toy-constant" and store.attrs["backend_version"] == "toy 1.0"
    for u, signer in zip(manifest.utt_id, manifest.signer):
        mask = store.read(u, "mask")
        if signer == fail:
            assert not mask.any() and not store.read(u).any()
        else:
            assert mask.all() and (store.read(u) == 5).all()
    assert "toy-constant" in registry.backends("sapiens") and "toy-constant" not in registry.backends("dwpose")


# --- fuse ----------------------------------------------------------------------------------------------------
def test_fused_store_concatenates_the_tracks_with_a_track_mask(small_corpus, tracks, tmp_path):
    _, corpus, _ = small_corpus
    summary = fuse(corpus, tracks, tmp_path / "features.zarr")
    store = FrameStore(tmp_path / "features.zarr")
    values, mask = store.read_all(), store.read_all("mask")
    assert values.shape == (summary["frames"], 1959) and mask.shape == (summary["frames"], 5)
    for k, t in enumerate(extractors.TRACK_ORDER):
        a, b = store.attrs["slices"][t]
        track = FrameStore(tracks / f"{t}.zarr")
        assert values[:, a:b].tobytes() == track.read_all().tobytes()
        np.testing.assert_array_equal(mask[:, k], track.read_all("mask"))


def test_normalisation_uses_train_statistics_only(small_corpus, tracks, tmp_path):
    _, corpus, _ = small_corpus
    fuse(corpus, tracks, tmp_path / "features.zarr")
    store = FrameStore(tmp_path / "features.zarr")
    manifest = read_manifest(corpus)
    train = [u for u, s in zip(manifest.utt_id, manifest.split) if s == "train"]
    values, mask = store.read_all(), store.read_all("mask")
    mean, std = np.asarray(store.attrs["norm_mean"]), np.asarray(store.attrs["norm_std"])
    for k, t in enumerate(extractors.TRACK_ORDER):  # each track over its own detected train frames
        a, b = store.attrs["slices"][t]
        x = np.concatenate([store.read(u)[store.read(u, "mask")[:, k], a:b] for u in train]).astype(np.float64)
        np.testing.assert_allclose(mean[a:b], x.mean(0), rtol=1e-5, atol=1e-6, err_msg=t)
        np.testing.assert_allclose(std[a:b], np.maximum(x.std(0), 1e-3), rtol=1e-5, atol=1e-6, err_msg=t)
        everything = values[mask[:, k], a:b].mean(0)
        assert not np.allclose(everything, mean[a:b]), t  # val / test frames did not leak in
    assert store.attrs["norm_split"] == "train"


def test_a_disabled_track_is_all_zeros_and_masked(small_corpus, tracks, tmp_path):
    _, corpus, _ = small_corpus
    fuse(corpus, tracks, tmp_path / "features.zarr", enabled={"sapiens": False, "smplerx": False})
    store = FrameStore(tmp_path / "features.zarr")
    mask = store.read_all("mask")
    assert not mask[:, 0].any() and not mask[:, 4].any() and mask[:, 1].mean() > 0.9
    a, b = store.attrs["slices"]["sapiens"]
    assert not store.read_all()[:, a:b].any()


def test_fuse_refuses_stores_that_do_not_match_the_manifest(small_corpus, tracks, tmp_path):
    _, corpus, _ = small_corpus
    tiny = tmp_path / "corpus"
    tiny.mkdir()
    manifest = read_manifest(corpus).iloc[:5]
    pq.write_table(
        pa.Table.from_pandas(manifest, schema=MANIFEST_SCHEMA, preserve_index=False), tiny / "manifest.parquet"
    )
    with pytest.raises(ValueError, match="does not match the manifest"):
        fuse(tiny, tracks, tmp_path / "features.zarr")
    assert not (tmp_path / "features.zarr").exists()
