"""`fuse` stage: concatenate the five track stores into `data/features.zarr` (1959 dims, Section 3.1).

    python -m pipeline.fuse [--params params.yaml] [--corpus data/corpus] [--tracks data/tracks]

`values` (ΣT, 1959) float32 holds the raw track values in the order of `pipeline.layout` (written into the
store's attributes: `tracks`, `dims`, `slices`); `mask` (ΣT, 5) says which tracks are real in each frame.
A track disabled in params (`<track>.enabled: false`) is all zeros and all masked, so a model
can run on any subset. Per-dim normalisation statistics (mean, std over masked-in frames) come from the train
split only and are stored in the attributes (`norm_mean`, `norm_std`); models normalise when they read.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from pipeline.corpus.manifest import read_manifest
from pipeline.layout import FUSED, TRACKS
from pipeline.params import load_params, run_cli, write_metrics
from pipeline.store import FrameStore, FrameStoreWriter

MIN_STD = 1e-3  # dims that barely vary in train (e.g. always-zero cells) are not blown up by normalisation


def fuse(
    corpus_dir: str | os.PathLike,
    tracks_dir: str | os.PathLike,
    out: str | os.PathLike,
    enabled: dict[str, bool] | None = None,
) -> dict:
    """Build the fused store; returns a summary (frames, per-track detected fraction, seconds)."""
    t0 = time.perf_counter()
    manifest = read_manifest(corpus_dir)
    ids = manifest["utt_id"].tolist()
    enabled = {t: True for t in FUSED.tracks} | (enabled or {})
    stores = {}
    for t in FUSED.tracks:
        if not enabled[t]:
            continue
        store = FrameStore(Path(tracks_dir) / f"{t}.zarr")
        store.check_ids(ids)
        if store.attrs.get("dims") != TRACKS[t]:
            raise ValueError(f"{store.path}: {store.attrs.get('dims')} dims, the {t} track has {TRACKS[t]}")
        if not np.array_equal(store.lengths, manifest["n_frames"].to_numpy()):
            bad = ids[int(np.flatnonzero(store.lengths != manifest["n_frames"].to_numpy())[0])]
            raise ValueError(f"{store.path}: frame counts differ from the manifest (first at {bad!r})")
        stores[t] = store
    slices = FUSED.slices
    n = int(manifest["n_frames"].sum())
    values = np.zeros((n, FUSED.width), np.float32)
    mask = np.zeros((n, len(FUSED.tracks)), bool)
    for k, t in enumerate(FUSED.tracks):
        if t in stores:
            a, b = slices[t]
            values[:, a:b] = stores[t].read_all("values")
            mask[:, k] = stores[t].read_all("mask")
    offsets = np.concatenate([[0], np.cumsum(manifest["n_frames"].to_numpy())])
    train = np.zeros(n, bool)
    for i in np.flatnonzero(manifest["split"].to_numpy() == "train"):
        train[offsets[i] : offsets[i + 1]] = True
    mean, std = train_statistics(values, mask, train)

    shapes = {"values": ((FUSED.width,), "float32"), "mask": ((len(FUSED.tracks),), "bool")}
    with FrameStoreWriter(out, shapes) as w:
        for i, u in enumerate(ids):
            s, e = offsets[i], offsets[i + 1]
            w.add(u, values=values[s:e], mask=mask[s:e])
        w.close(
            {
                **FUSED.to_attrs(),
                "enabled": enabled,
                "norm_mean": mean.astype(np.float32).tolist(),
                "norm_std": std.astype(np.float32).tolist(),
                "norm_split": "train",
                "fps": float(manifest["fps"].iloc[0]),
                "backends": {t: s.attrs.get("backend") for t, s in stores.items()},
            }
        )
    return {
        "frames": n,
        "utterances": len(ids),
        "detected_fraction": {t: round(float(mask[:, k].mean()), 4) for k, t in enumerate(FUSED.tracks)},
        "seconds": round(time.perf_counter() - t0, 2),
    }


def train_statistics(values: np.ndarray, mask: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dim mean and std (floored at MIN_STD) of each track over its masked-in frames of the train split:
    values (ΣT, 1959), mask (ΣT, 5), train (ΣT,) -> (1959,), (1959,). A track never present keeps 0 / 1."""
    mean, std = np.zeros(FUSED.width), np.ones(FUSED.width)
    for k, (a, b) in enumerate(FUSED.slices.values()):
        rows = train & mask[:, k]
        if rows.any():
            x = values[rows, a:b].astype(np.float64)
            mean[a:b] = x.mean(0)
            std[a:b] = np.maximum(x.std(0), MIN_STD)
    return mean, std


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--corpus", default="data/corpus")
    ap.add_argument("--tracks", default="data/tracks")
    ap.add_argument("--out", default="data/features.zarr")
    ap.add_argument("--metrics", default="metrics/fuse.json")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    enabled = {t: bool((params.get(t) or {}).get("enabled", True)) for t in FUSED.tracks}
    summary = fuse(args.corpus, args.tracks, args.out, enabled)
    write_metrics(args.metrics, summary)
    print(f"fuse: {summary['utterances']} utterances, {summary['frames']} frames, {summary['seconds']} s")


if __name__ == "__main__":
    run_cli(main)
