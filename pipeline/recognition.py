"""Recognition and its scores: decoding any Stage I reading tracks (extracted, or predicted by Video2Pose) into
glosses with the `decoding` params, and scoring the hypotheses (`pipeline.scoring`). `evaluate`,
`temperature_ablation` and the benchmarks share it.

A loader gives each split's tracks as `Utterance`s (`pose2gloss_loader`: the fused store;
`evaluate.video2gloss_loader`: the tracks Video2Pose predicts from the videos), and `score_splits` decodes them
all the same way.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from pipeline import scoring
from pipeline.checkpoints import ModelFileError
from pipeline.corpus.manifest import read_manifest
from pipeline.data import Utterance, collate, length_batches, load_split, pad_targets
from pipeline.decoding import CTCPrefixScorer, DecodeConfig, decode
from pipeline.devices import resolve_device
from pipeline.nets.pose2gloss import Pose2Gloss, shift_right
from pipeline.vocab import SPECIAL_TOKENS, Vocab, tokenize

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


def within_model(dcfg: DecodeConfig, model: Pose2Gloss) -> DecodeConfig:
    """`dcfg` generating at most the sequence length the model's decoder has positions for (`max_len`)."""
    return dataclasses.replace(dcfg, max_len=min(dcfg.max_len, model.cfg.max_len))


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
    device, dcfg = next(model.parameters()).device, within_model(dcfg, model)
    out: dict = {"utt_id": [], "references": [], "hypotheses": []} | {f"top{k}": (0, 0) for k in TOP_K}
    gen = torch.Generator(device=device).manual_seed(dcfg.seed)
    for items in tqdm(length_batches(data, batch_size), desc=desc, unit="batch", mininterval=2.0):
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


@torch.no_grad()
def nbest(
    model: Pose2Gloss, memory_fn: MemoryFn, data: list[Utterance], vocab: Vocab, dcfg: DecodeConfig, k: int = 1,
    batch_size: int = 32,
) -> list[list[tuple[str, float]]]:  # fmt: skip
    """The `k` best (glosses, score) of each utterance, best first, in `data`'s order: the beam search's finished
    hypotheses and their length-normalised scores (`decoding.beam_search`), batched as `recognize` batches. Only
    the beam search ranks hypotheses: another strategy gives its one hypothesis with no score (NaN)."""
    if k > 1 and dcfg.strategy != "beam":
        raise ValueError(f"{k} hypotheses need decoding.strategy beam, not {dcfg.strategy!r}")
    device, dcfg = next(model.parameters()).device, within_model(dcfg, model)
    gen = torch.Generator(device=device).manual_seed(dcfg.seed)
    position = {id(u): i for i, u in enumerate(data)}
    out: list[list[tuple[str, float]]] = [[] for _ in data]
    for items in tqdm(length_batches(data, batch_size), desc="decode", unit="batch", mininterval=2.0,
                      disable=len(data) <= batch_size):  # fmt: skip
        memory, pad, ctc_logp = memory_fn(items, gen)
        ctc = CTCPrefixScorer(ctc_logp, (~pad).sum(1)) if dcfg.uses_ctc else None
        if dcfg.strategy == "beam":
            found = decode(model.next_logits_fn(memory, pad), len(items), dcfg, device, ctc, n_best=k)
        else:
            found = [[(float("nan"), row.tolist())] for row in decode(model.next_logits_fn(memory, pad), len(items),
                                                                      dcfg, device, ctc)]  # fmt: skip
        for u, hyps in zip(items, found):
            out[position[id(u)]] = [(vocab.decode(ids), float(score)) for score, ids in hyps[:k]]
    return out


def pose2gloss_memory(model: Pose2Gloss) -> MemoryFn:
    """Stage I reads the fused feature store."""
    device = next(model.parameters()).device

    def memory_fn(items: list[Utterance], gen: torch.Generator) -> DecoderInputs:
        batch = {k: v.to(device) for k, v in collate(items).items()}
        memory, ctc_logp = model.inference(batch["features"], batch["track_mask"], batch["frame_pad"], gen)
        return memory, batch["frame_pad"], ctc_logp

    return memory_fn


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


HYPOTHESIS_COLUMNS = ("split", "utt_id", "signer", "reference", "hypothesis", "bleu", "bleu1", "wer", "substitutions",
                      "deletions", "insertions")  # fmt: skip


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
    return pd.DataFrame(rows, columns=list(HYPOTHESIS_COLUMNS))


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
    against WER, BLEU and Top-k (each of its glosses a miss) instead of silently leaving the test set."""
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
            for k in TOP_K:  # its reference glosses are misses, as WER counts them: Top-k over the same test set
                rec[f"top{k}"] = (rec[f"top{k}"][0], rec[f"top{k}"][1] + len(tokenize(glosses[utt])))
        metrics[split] = split_metrics(rec) | {"skipped": skipped}
        tables.append(per_utterance(rec, split, signers))
    return metrics, pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def check_vocabulary(model: Pose2Gloss, vocab: Vocab, checkpoint: str | os.PathLike, corpus: str | os.PathLike) -> None:
    """A Stage I scores the glosses of the vocabulary it was trained on: on a corpus of another vocabulary its ids
    would be read as other glosses (wrong metrics, or an index error), so the pair is refused."""
    trained = (model.input_spec or {}).get("vocab")
    if (trained is not None and list(trained) != list(vocab.glosses)) or model.cfg.vocab_size != len(vocab):
        n = len(trained) if trained is not None else model.cfg.vocab_size - len(SPECIAL_TOKENS)
        raise ModelFileError(
            f"{checkpoint}: trained on another vocabulary ({n} glosses) than {Path(corpus) / 'vocab.json'} "
            f"({len(vocab.glosses)} glosses): evaluate it on the corpus it was trained on, or retrain it"
        )


def pose2gloss_loader(
    checkpoint: str | os.PathLike, features: str | os.PathLike, corpus: str | os.PathLike, device: str = "auto"
) -> tuple[Pose2Gloss, Loader]:
    """A published Stage I model and what it reads: the fused store's (extracted) tracks of a split."""
    model = Pose2Gloss.from_checkpoint(checkpoint, resolve_device(device))
    vocab = Vocab.load(Path(corpus) / "vocab.json")
    check_vocabulary(model, vocab, checkpoint, corpus)
    options = dict(max_len=model.cfg.max_len, track_dims=model.cfg.track_dims, **model.data_options)

    def load(split: str) -> tuple[list[Utterance], dict[str, str]]:
        return load_split(features, corpus, vocab, split, **options), {}

    return model, load
