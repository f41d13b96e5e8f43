"""`evaluate@<model>` stage: decode the test splits and score them (Section 5.1).

    python -m pipeline.evaluate pose2gloss|video2gloss [--params params.yaml]

Decodes `test` and `test_unseen` with the `decoding` params and the top-level `temperature` (Table 2: beam 5,
length penalty 0.7, repetition penalty 2.5, temperature 0.7), and writes

- `metrics/<model>.json`: per split BLEU, corpus BLEU, Best, WER (with substitutions / deletions / insertions),
  Top-1 and Top-5 (definitions in `pipeline/scoring.py` and the README);
- `metrics/hypotheses/<model>.csv` (DVC-cached): one row per utterance with its reference, hypothesis and
  sentence scores.

Only the checkpoint, the data and the inference params feed this stage, so `dvc exp run -S temperature=0.3`
reruns evaluation (and the tables), never training.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from extractors import TRACK_ORDER
from pipeline import scoring
from pipeline.corpus.manifest import read_manifest
from pipeline.data import Utterance, collate, load_split, pad_targets
from pipeline.decoding import CTCPrefixScorer, DecodeConfig, decode
from pipeline.devices import autocast, resolve_device, video_attention
from pipeline.nets.pose2gloss import Pose2Gloss, shift_right
from pipeline.nets.video2pose import Video2Pose
from pipeline.params import load_params, write_metrics
from pipeline.video import Clip, FrameCache, FrameSpec, clip_frames, load_clips, pad_frames
from pipeline.vocab import Vocab

SPLITS = ("test", "test_unseen")
MODELS = ("pose2gloss", "video2gloss")  # what `evaluate` scores: Stage I on the extractors' tracks; Stage II + I
TOP_K = (1, 5)
# what a model makes of a batch for decoding: decoder memory (B, T, d), frame_pad (B, T) and the CTC head's frame
# log-probabilities (B, T, V) or None
DecoderInputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]
MemoryFn = Callable[[list[Utterance], torch.Generator], DecoderInputs]


def decode_config(params: dict, model: str = "pose2gloss") -> DecodeConfig:
    """The `decoding` params section plus the top-level `temperature`, for `model` (pose2gloss | video2gloss):
    `ctc_weight` is one number for both, or a mapping with one per model (the predicted tracks of Video2Gloss make
    the two heads' balance different). Unknown keys are errors."""
    section = dict(params.get("decoding", {}) or {})
    section.pop("batch_size", None)
    known = {f.name for f in fields(DecodeConfig)} - {"temperature", "seed"}
    if unknown := sorted(set(section) - known):
        raise ValueError(f"decoding params: unknown keys {unknown}")
    if isinstance(weight := section.get("ctc_weight"), dict):
        if unknown := sorted(set(weight) - set(MODELS)):
            raise ValueError(f"decoding.ctc_weight: unknown models {unknown}; models are {list(MODELS)}")
        if model not in weight:
            raise ValueError(f"decoding.ctc_weight has no weight for {model}: set decoding.ctc_weight.{model}")
        section["ctc_weight"] = weight[model]
    return DecodeConfig(**section, temperature=float(params.get("temperature", 0.7)), seed=int(params.get("seed", 0)))


def _batches(data: list, batch_size: int) -> Iterator[list]:
    order = sorted(range(len(data)), key=lambda i: data[i].n_frames)  # similar lengths pad less
    for s in range(0, len(order), batch_size):
        yield [data[i] for i in order[s : s + batch_size]]


@torch.no_grad()
def recognize(
    model: Pose2Gloss,
    memory_fn: MemoryFn,
    data: list[Utterance],
    vocab: Vocab,
    dcfg: DecodeConfig,
    batch_size: int = 32,
    desc: str = "evaluate",
    topk: bool = True,
) -> dict:
    """Decode every utterance and, with `topk`, count teacher-forced top-k hits.

    Returns {"utt_id", "references", "hypotheses"} lists and {"top<k>": (hits, count)} (zeros without `topk`);
    the memory is computed once per batch and shared by the search and the teacher-forced pass."""
    device = next(model.parameters()).device
    out: dict = {"utt_id": [], "references": [], "hypotheses": []} | {f"top{k}": (0, 0) for k in TOP_K}
    gen = torch.Generator(device=device).manual_seed(dcfg.seed)
    for items in tqdm(list(_batches(data, batch_size)), desc=desc, unit="batch", mininterval=2.0):
        memory, pad, ctc_logp = memory_fn(items, gen)
        if dcfg.uses_ctc and ctc_logp is None:
            raise ValueError(
                f"decoding (strategy {dcfg.strategy!r}, ctc_weight {dcfg.ctc_weight}) needs the CTC head, but this "
                "Stage I model was trained with pose2gloss.losses.ctc=false: set decoding.ctc_weight=0"
            )
        ctc = CTCPrefixScorer(ctc_logp, (~pad).sum(1)) if dcfg.uses_ctc else None
        ids = decode(model.next_logits_fn(memory, pad), len(items), dcfg, device, ctc)
        if topk:
            targets = pad_targets([u.target for u in items]).to(device)
            logits = model.decoder(shift_right(targets), memory, pad)
            for k in TOP_K:
                hits, count = scoring.topk_hits(logits, targets, k)
                out[f"top{k}"] = (out[f"top{k}"][0] + hits, out[f"top{k}"][1] + count)
        out["utt_id"] += [u.utt_id for u in items]
        out["references"] += [u.glosses for u in items]
        out["hypotheses"] += [vocab.decode(row.tolist()) for row in ids]
    return out


def pose2gloss_memory(model: Pose2Gloss) -> MemoryFn:
    """Stage I reads the fused feature store."""
    device = next(model.parameters()).device

    def memory_fn(items: list[Utterance], gen: torch.Generator) -> DecoderInputs:
        batch = {k: v.to(device) for k, v in collate(items).items()}
        memory, ctc_logp = model.inference(batch["features"], batch["track_mask"], batch["frame_pad"], gen)
        return memory, batch["frame_pad"], ctc_logp

    return memory_fn


@torch.no_grad()
def predict_tracks(
    v2p: Video2Pose, p2g: Pose2Gloss, clips: list[Clip], cache: FrameCache, batch_size: int = 32
) -> list[Utterance]:
    """Video2Pose on each clip's cached frames: the five tracks it predicts (n_frames, 1959), which the frozen Stage I
    then reads as it reads extracted ones (every track it was trained on, present on every frame), as Utterances
    in the clips' order. Batched as `recognize` batches them."""
    device = next(v2p.parameters()).device
    predicted = {}
    for items in tqdm(list(_batches(clips, batch_size)), desc="video2pose", unit="batch", mininterval=2.0):
        batch = pad_frames(clip_frames(items, cache))
        frames, pad = batch["frames"].to(device), batch["frame_pad"].to(device)
        with autocast(device), video_attention(device):
            poses = v2p(frames, pad).float().cpu().numpy()  # (B, T, 1959)
        mask = predicted_track_mask(p2g, pad).cpu().numpy()  # (B, T, 5)
        for b, c in enumerate(items):
            n = c.n_frames
            predicted[c.utt_id] = Utterance(c.utt_id, poses[b, :n], mask[b, :n], c.target, c.glosses)
    return [predicted[c.utt_id] for c in clips]


def predicted_track_mask(p2g: Pose2Gloss, frame_pad: torch.Tensor) -> torch.Tensor:
    """(B, T, 5): Video2Pose predicts every track on every real frame; Stage I reads the tracks it was trained on."""
    tracks = p2g.data_options.get("tracks")
    use = torch.tensor([tracks is None or t in tracks for t in TRACK_ORDER], device=frame_pad.device)
    return (~frame_pad).unsqueeze(-1) & use


def split_metrics(rec: dict) -> dict:
    refs, hyps = rec["references"], rec["hypotheses"]
    w = scoring.wer(refs, hyps)
    return {
        "bleu": scoring.bleu(refs, hyps),
        "corpus_bleu": scoring.corpus_bleu(refs, hyps),
        "best": scoring.best(refs, hyps),
        **w,
        **{f"top{k}": 100 * rec[f"top{k}"][0] / max(1, rec[f"top{k}"][1]) for k in TOP_K},
        "utterances": len(refs),
    }


def per_utterance(rec: dict, split: str, signers: dict[str, str]) -> pd.DataFrame:
    rows = []
    for utt, ref, hyp in zip(rec["utt_id"], rec["references"], rec["hypotheses"]):
        w = scoring.wer([ref], [hyp])
        rows.append({
            "split": split, "utt_id": utt, "signer": signers.get(utt, ""), "reference": ref, "hypothesis": hyp,
            "bleu": round(scoring.sentence_bleu(ref, hyp), 3),
            "bleu1": round(scoring.sentence_bleu(ref, hyp, scoring.BLEU1), 3),
            "wer": round(w["wer"], 3), "substitutions": w["substitutions"], "deletions": w["deletions"],
            "insertions": w["insertions"],
        })  # fmt: skip
    return pd.DataFrame(rows)


def most_frequent_sequence_baseline(manifest: pd.DataFrame, splits: tuple[str, ...] = SPLITS) -> dict:
    """The trivial baseline: always answer the most frequent gloss sequence of the train split (ties: the first in
    the manifest). Its WER and BLEU per split say what a model gains over knowing only the label distribution."""
    seq = manifest.loc[manifest.split == "train", "glosses"].value_counts(sort=True).index[0]
    out: dict = {"sequence": seq}
    for split in splits:
        refs = manifest.loc[manifest.split == split, "glosses"].tolist()
        if refs:
            out[split] = {
                "wer": scoring.wer(refs, [seq] * len(refs))["wer"],
                "bleu": scoring.bleu(refs, [seq] * len(refs)),
            }
    return out


Loader = Callable[[str], tuple[list[Utterance], dict[str, str]]]  # split -> its tracks, {utt_id: why skipped}


def score_splits(
    model: Pose2Gloss,
    load: Loader,
    corpus: str | os.PathLike,
    dcfg: DecodeConfig,
    splits: tuple[str, ...] = SPLITS,
    batch_size: int = 32,
) -> tuple[dict, pd.DataFrame]:
    """Metrics per split and the per-utterance table of Stage I `model` reading the tracks `load` gives.

    `load(split)` returns the split's tracks (extracted, or predicted by Video2Pose) and {utt_id: reason} for the
    utterances it had to skip (an undecodable video):
    a skipped utterance is reported under the split's `skipped` and scored as an empty hypothesis, so it counts
    against WER and BLEU instead of silently leaving the test set."""
    vocab = Vocab.load(Path(corpus) / "vocab.json")
    manifest = read_manifest(corpus)
    signers = dict(zip(manifest.utt_id, manifest.signer))
    glosses = dict(zip(manifest.utt_id, manifest.glosses))
    metrics, tables = {}, []
    for split in splits:
        items, skipped = load(split)
        if not items and not skipped:
            continue
        rec = recognize(model, pose2gloss_memory(model), items, vocab, dcfg, batch_size, desc=f"evaluate {split}")
        for utt, reason in skipped.items():
            print(f"evaluate: {utt} scored as an empty hypothesis: {reason}")
            rec["utt_id"].append(utt)
            rec["references"].append(glosses[utt])
            rec["hypotheses"].append("")
        metrics[split] = split_metrics(rec) | {"skipped": skipped}
        tables.append(per_utterance(rec, split, signers))
    return metrics, pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def pose2gloss_loader(
    checkpoint: str | os.PathLike, features: str | os.PathLike, corpus: str | os.PathLike, device: str = "auto"
) -> tuple[Pose2Gloss, Loader]:
    """A Stage I checkpoint and what it reads: the fused store's (extracted) tracks of a split."""
    model = Pose2Gloss.from_checkpoint(checkpoint, resolve_device(device))
    vocab = Vocab.load(Path(corpus) / "vocab.json")

    def load(split: str) -> tuple[list[Utterance], dict[str, str]]:
        return load_split(features, corpus, vocab, split, max_len=model.cfg.max_len, **model.data_options), {}

    return model, load


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
    dev = resolve_device(device)
    v2p = Video2Pose.from_checkpoint(checkpoint, dev)
    p2g = Pose2Gloss.from_checkpoint(pose2gloss, dev)
    cache = FrameCache(frame_cache, FrameSpec(**v2p.frame_options))
    vocab = Vocab.load(Path(corpus) / "vocab.json")

    def load(split: str) -> tuple[list[Utterance], dict[str, str]]:
        clips, skipped = load_clips(corpus, vocab, split, cache, max_len=p2g.cfg.max_len)
        return predict_tracks(v2p, p2g, clips, cache, batch_size), skipped

    return p2g, load


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
    ap.add_argument("--pose2gloss", default="models/pose2gloss/best.pt", help="the (frozen) Stage I checkpoint")
    ap.add_argument("--video2pose", default="models/video2pose/best.pt", help="the Stage II checkpoint")
    ap.add_argument("--frame-cache", default="data/frame_cache")
    ap.add_argument("--metrics-dir", default="metrics")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    dcfg = decode_config(params, args.model)
    batch_size = int((params.get("decoding") or {}).get("batch_size", 32))
    t0 = time.perf_counter()
    if args.model == "pose2gloss":
        metrics, table = evaluate_pose2gloss(args.pose2gloss, args.features, args.corpus, dcfg, batch_size=batch_size)
    else:
        metrics, table = evaluate_video2gloss(args.video2pose, args.pose2gloss, args.corpus, dcfg, args.frame_cache,
                                              batch_size=batch_size)  # fmt: skip
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


if __name__ == "__main__":
    main()
