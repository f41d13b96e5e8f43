"""Stage I data: the fused feature store read straight into memory, normalised with the train statistics, and a
sequence-length-bucketing batch sampler."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.corpus.manifest import read_manifest
from pipeline.layout import FusedLayout
from pipeline.store import FrameStore
from pipeline.vocab import EOS, PAD, Vocab


class FeatureStoreError(ValueError):
    """The fused store cannot be used for training (wrong width, NaN, misaligned with the manifest)."""


@dataclass
class Utterance:
    utt_id: str
    features: np.ndarray  # (T, 1959) float32 (pipeline.layout), normalised, masked tracks zero
    track_mask: np.ndarray  # (T, 5) bool
    target: np.ndarray  # (L,) int64: gloss ids then EOS
    glosses: str

    @property
    def n_frames(self) -> int:
        return len(self.features)


def feature_layout(features: str | os.PathLike, store: FrameStore | None = None) -> FusedLayout:
    """The fused layout a feature store was written with (its attributes); `store`: the store, already open."""
    store = store or FrameStore(features)
    try:
        return FusedLayout.from_attrs(store.attrs, str(features))
    except ValueError as err:
        raise FeatureStoreError(str(err)) from err


def load_split(
    features: str | os.PathLike,
    corpus: str | os.PathLike,
    vocab: Vocab,
    split: str,
    tracks: tuple[str, ...] | None = None,
    frame_stride: int = 1,
    max_frames: int = 1024,
    max_len: int = 64,
    track_dims: tuple[int, ...] | None = None,
) -> list[Utterance]:
    """Utterances of one split, ready for a model.

    Args:
        tracks: use only these tracks (the others are masked), e.g. `("dwpose",)` for a single-track run.
        frame_stride: keep every n-th frame (temporal subsampling for speed).
        track_dims: the per-track dims a model reads (its config); a store with another layout is an error.
    """
    store = FrameStore(features)
    layout = feature_layout(features, store)
    if track_dims is not None and tuple(track_dims) != layout.dims:
        raise FeatureStoreError(
            f"{features}: tracks of {list(layout.dims)} dims, the model reads {list(track_dims)}: rebuild the store "
            "with `fuse` or use a model trained on it"
        )
    manifest = read_manifest(corpus)
    store.check_ids(manifest["utt_id"].tolist())
    mean = np.asarray(store.attrs["norm_mean"], np.float32)
    std = np.asarray(store.attrs["norm_std"], np.float32)
    if not (np.isfinite(mean).all() and np.isfinite(std).all()):
        raise FeatureStoreError(f"{features}: normalisation statistics contain NaN")
    use = layout.use(tracks)
    rows = manifest.index[manifest["split"] == split].to_numpy()
    out = []
    if len(rows) == 0:
        return out
    values = store.read_many(rows.tolist(), "values")
    masks = store.read_many(rows.tolist(), "mask")
    for i, v, m in zip(rows, values, masks):
        if not np.isfinite(v).all():
            raise FeatureStoreError(f"{features}: utterance {manifest.utt_id[i]!r} contains NaN or infinite values")
        x, m = model_input(v, m, (mean, std), layout, use, frame_stride, max_frames)
        ids = vocab.encode(manifest.glosses[i])[: max_len - 1] + [EOS]
        out.append(Utterance(manifest.utt_id[i], x.astype(np.float32), m, np.array(ids), manifest.glosses[i]))
    return out


def input_spec(features: str | os.PathLike, vocab: Vocab) -> dict:
    """What a trained model needs to read poses that are not in its feature store (`recognize`): the store's
    normalisation statistics and the vocabulary, published with the model."""
    attrs = FrameStore(features).attrs
    return {"norm_mean": list(attrs["norm_mean"]), "norm_std": list(attrs["norm_std"]), "vocab": list(vocab.glosses)}


def model_input(
    values: np.ndarray, mask: np.ndarray, norm: tuple[np.ndarray, np.ndarray], layout: FusedLayout, use: np.ndarray,
    frame_stride: int = 1, max_frames: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Raw fused frames (T, 1959) and their track mask (T, 5) as a model reads them: every `frame_stride`-th
    frame, at most `max_frames`, normalised by the train statistics `norm` (mean, std), the tracks outside `use`
    and the absent ones masked and zeroed. The one place the store's values become a model's input."""
    m = mask[::frame_stride][:max_frames] & use
    x = (values[::frame_stride][:max_frames] - norm[0]) / norm[1]
    x *= layout.expand_mask(m)
    return x.astype(np.float32), m


def augment(
    u: Utterance,
    rng: np.random.Generator,
    track_dims: tuple[int, ...],
    speed: tuple[float, float] = (1.0, 1.0),
    noise: float = 0.0,
    track_subset: float = 0.0,
) -> Utterance:
    """A training-time variant of an utterance; the stored features are never modified.

    Args:
        track_dims: each track's dims in the features (the layout's `dims`).
        speed: signing-rate factor drawn uniformly from this range; the frames are resampled (nearest frame)
            to len / factor, as if the same signs were made faster or slower.
        noise: standard deviation of Gaussian noise added to the present tracks (features are unit-variance).
        track_subset: probability that the utterance keeps only a random subset of its present tracks (the
            others masked for the whole utterance): one track alone half of the time, otherwise a size drawn
            uniformly from 2 to one less than the tracks present; then the tracks uniformly. One track alone is
            the hardest input and the one a `.pose` file gives, hence its half; the model learns to recognise
            from whichever extractors a user can run.
    """
    x, m = u.features, u.track_mask
    if speed != (1.0, 1.0):
        n = len(x)
        n_new = max(1, round(n / rng.uniform(*speed)))
        idx = np.round(np.linspace(0, n - 1, n_new)).astype(np.int64)
        x, m = x[idx], m[idx]
    present = np.flatnonzero(m.any(0))
    if track_subset > 0 and len(present) > 1 and rng.random() < track_subset:
        size = 1 if len(present) == 2 or rng.random() < 0.5 else int(rng.integers(2, len(present)))
        keep = rng.choice(present, size=size, replace=False)
        m = m.copy()
        m[:, np.setdiff1d(present, keep)] = False
    if noise > 0:
        x = x + noise * rng.standard_normal(x.shape, dtype=np.float32)
    return _masked(u, x, m, track_dims)


def _masked(u: Utterance, x: np.ndarray, m: np.ndarray, track_dims: tuple[int, ...]) -> Utterance:
    """`u` with features `x` and track mask `m`, every absent track's values zeroed."""
    return Utterance(u.utt_id, (x * np.repeat(m, track_dims, axis=1)).astype(np.float32), m, u.target, u.glosses)


def keep_one_track(u: Utterance, rng: np.random.Generator, track_dims: tuple[int, ...]) -> Utterance:
    """`u` with one of its present tracks, drawn uniformly, and the others masked: Stage I's solo phase."""
    present = np.flatnonzero(u.track_mask.any(0))
    if len(present) == 0:
        return u
    m = np.zeros_like(u.track_mask)
    k = rng.choice(present)
    m[:, k] = u.track_mask[:, k]
    return _masked(u, u.features, m, track_dims)


def length_batches(items: list, batch_size: int) -> list[list]:
    """Items (anything with `n_frames`) in batches of similar length, shortest first: less padding to decode."""
    order = sorted(range(len(items)), key=lambda i: items[i].n_frames)
    return [[items[i] for i in order[s : s + batch_size]] for s in range(0, len(order), batch_size)]


def bucket_batches(lengths: list[int], batch_size: int, rng: np.random.Generator) -> list[list[int]]:
    """Batches of similar length: shuffle, sort within windows of 50 batches, cut, shuffle the batches."""
    order = rng.permutation(len(lengths))
    window = batch_size * 50
    batches = []
    for s in range(0, len(order), window):
        chunk = sorted(order[s : s + window], key=lambda i: lengths[i])
        batches += [chunk[k : k + batch_size] for k in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def pad_targets(targets: list[np.ndarray]) -> torch.Tensor:
    """Gloss id sequences (each ending in EOS) -> (B, L) int64, PAD after the end."""
    out = torch.full((len(targets), max(len(t) for t in targets)), PAD, dtype=torch.long)
    for b, t in enumerate(targets):
        out[b, : len(t)] = torch.from_numpy(np.asarray(t, dtype=np.int64))
    return out


def collate(items: list[Utterance]) -> dict[str, torch.Tensor]:
    """Pad to the longest item: features (B, T, 1959), track_mask (B, T, 5), frame_pad (B, T), targets (B, L)."""
    B = len(items)
    T = max(len(u.features) for u in items)
    x = torch.zeros(B, T, items[0].features.shape[1])
    mask = torch.zeros(B, T, items[0].track_mask.shape[1], dtype=torch.bool)
    pad = torch.ones(B, T, dtype=torch.bool)
    for b, u in enumerate(items):
        n = len(u.features)
        x[b, :n] = torch.from_numpy(u.features)
        mask[b, :n] = torch.from_numpy(u.track_mask)
        pad[b, :n] = False
    return {"features": x, "track_mask": mask, "frame_pad": pad, "targets": pad_targets([u.target for u in items])}
