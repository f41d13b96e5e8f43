"""`evaluate@<model>` stage: decode the test splits and score them (Section 5.1).

    python -m pipeline.evaluate pose2gloss|video2gloss [--params params.yaml]

Decodes `test` and `test_unseen` with the `decoding` params and the top-level `temperature` (Table 2: beam 5,
length penalty 0.7, repetition penalty 2.5, temperature 0.7), and writes

- `metrics/<model>.json`: per split BLEU, corpus BLEU, Best, WER (with substitutions / deletions / insertions),
  Top-1 and Top-5 (definitions in `pipeline/scoring.py` and the README);
- `metrics/hypotheses/<model>.csv` (DVC-cached): one row per utterance with its reference, hypothesis and
  sentence scores.

Only the published models, the data and the inference params feed this stage, so `dvc exp run -S
temperature=0.3` reruns evaluation (and the tables), never training.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd

from pipeline.checkpoints import ModelFileError, not_trained_reason
from pipeline.corpus.manifest import read_manifest
from pipeline.data import Utterance
from pipeline.decoding import DecodeConfig
from pipeline.devices import resolve_device
from pipeline.nets.pose2gloss import Pose2Gloss
from pipeline.params import load_params, run_cli, write_metrics
from pipeline.recognition import (
    HYPOTHESIS_COLUMNS,
    MODELS,
    SPLITS,
    Loader,
    decode_config,
    most_frequent_sequence_baseline,
    pose2gloss_loader,
    score_splits,
)
from pipeline.video import FrameCache, load_clips
from pipeline.video2gloss import Video2Gloss
from pipeline.vocab import Vocab


def video2gloss_loader(
    checkpoint: str | os.PathLike,
    pose2gloss: str | os.PathLike,
    corpus: str | os.PathLike,
    frame_cache: str | os.PathLike,
    batch_size: int = 32,
    device: str = "auto",
) -> tuple[Pose2Gloss, Loader]:
    """Video2Gloss: the frozen Stage I checkpoint and what it reads, the tracks Video2Pose predicts from a split's
    videos (`predict_tracks`); videos that cannot be decoded are returned as skipped."""
    model = Video2Gloss.from_checkpoints(checkpoint, pose2gloss, resolve_device(device))
    cache = FrameCache(frame_cache, model.frame_spec)
    vocab = Vocab.load(Path(corpus) / "vocab.json")

    def load(split: str) -> tuple[list[Utterance], dict[str, str]]:
        clips, skipped = load_clips(corpus, vocab, split, cache, max_len=model.pose2gloss.cfg.max_len)
        return model.predict_tracks(clips, cache, batch_size), skipped

    return model.pose2gloss, load


def evaluate_pose2gloss(
    checkpoint: str | os.PathLike,
    features: str | os.PathLike,
    corpus: str | os.PathLike,
    dcfg: DecodeConfig,
    splits: tuple[str, ...] = SPLITS,
    batch_size: int = 32,
    device: str = "auto",
) -> tuple[dict, pd.DataFrame]:
    """Metrics per split and the per-utterance table for a Stage I checkpoint reading the fused store."""
    model, load = pose2gloss_loader(checkpoint, features, corpus, device)
    return score_splits(model, load, corpus, dcfg, splits, batch_size)


def evaluate_video2gloss(
    checkpoint: str | os.PathLike,
    pose2gloss: str | os.PathLike,
    corpus: str | os.PathLike,
    dcfg: DecodeConfig,
    frame_cache: str | os.PathLike,
    splits: tuple[str, ...] = SPLITS,
    batch_size: int = 32,
    device: str = "auto",
) -> tuple[dict, pd.DataFrame]:
    """Metrics per split and the per-utterance table for Video2Gloss: Video2Pose then the frozen Stage I.
    Videos that cannot be decoded are reported and scored as empty hypotheses (`score_splits`)."""
    model, load = video2gloss_loader(checkpoint, pose2gloss, corpus, frame_cache, batch_size, device)
    return score_splits(model, load, corpus, dcfg, splits, batch_size)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", choices=MODELS)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--features", default="data/features.zarr")
    ap.add_argument("--corpus", default="data/corpus")
    ap.add_argument("--pose2gloss", default="models/pose2gloss/best", help="the published (frozen) Stage I model")
    ap.add_argument("--video2pose", default="models/video2pose/best", help="the published Stage II model")
    ap.add_argument("--frame-cache", default="data/frame_cache")
    ap.add_argument("--metrics-dir", default="metrics")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    dcfg = decode_config(params, args.model)
    batch_size = int((params.get("decoding") or {}).get("batch_size", 32))
    t0 = time.perf_counter()
    if args.model == "video2gloss" and (reason := not_trained_reason(args.video2pose)):
        write_not_evaluated(Path(args.metrics_dir), args.model, reason)
        print(f"evaluate {args.model}: not evaluated: {reason}")
        return
    try:
        if args.model == "pose2gloss":
            metrics, table = evaluate_pose2gloss(args.pose2gloss, args.features, args.corpus, dcfg,
                                                 batch_size=batch_size)  # fmt: skip
        else:
            metrics, table = evaluate_video2gloss(args.video2pose, args.pose2gloss, args.corpus, dcfg,
                                                  args.frame_cache, batch_size=batch_size)  # fmt: skip
    except (ModelFileError, FileNotFoundError) as err:  # a model that is missing, a pickle, or of another kind
        raise SystemExit(f"evaluate {args.model}: {err}") from None
    metrics["baseline_most_frequent_sequence"] = most_frequent_sequence_baseline(read_manifest(args.corpus))
    seconds = time.perf_counter() - t0
    n = sum(m.get("utterances", 0) for m in metrics.values())
    report = {**metrics, "decoding": vars(dcfg), "seconds": round(seconds, 1),
              "ms_per_utterance": round(1000 * seconds / max(1, n), 1)}  # fmt: skip
    out = Path(args.metrics_dir)
    write_metrics(out / f"{args.model}.json", report)
    (out / "hypotheses").mkdir(parents=True, exist_ok=True)
    tmp = out / "hypotheses" / f".{args.model}.csv.tmp"
    table.to_csv(tmp, index=False)
    os.replace(tmp, out / "hypotheses" / f"{args.model}.csv")
    for split in SPLITS:
        if split not in metrics:
            continue
        m = metrics[split]
        print(f"evaluate {args.model} {split}: WER {m['wer']:.2f}  BLEU {m['bleu']:.2f}  Top-5 {m['top5']:.2f}"
              f"  Best {m['best']:.2f}")  # fmt: skip


def write_not_evaluated(metrics_dir: Path, model: str, reason: str) -> None:
    """The metrics and an empty hypotheses table of a model that was not trained (its reason kept)."""
    write_metrics(metrics_dir / f"{model}.json", {"not_evaluated": reason})
    (metrics_dir / "hypotheses").mkdir(parents=True, exist_ok=True)
    tmp = metrics_dir / "hypotheses" / f".{model}.csv.tmp"
    pd.DataFrame(columns=HYPOTHESIS_COLUMNS).to_csv(tmp, index=False)
    os.replace(tmp, metrics_dir / "hypotheses" / f"{model}.csv")


if __name__ == "__main__":
    run_cli(main)
