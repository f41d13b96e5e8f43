"""Fast decoding (issue 18, part 4): the joint CTC / attention beam search of `pipeline.decoding` (`decode`, what
`recognize` runs) against `beam_search_reference`, the implementation it replaced, side by side in one run on the
trained Stage I model (needs `make repro` first: it reads data/ and models/, and writes neither).

    python bench/bench_decoding.py [--splits test val] [--repeats 5] [--threads 1] [--device cpu] [--checkpoint P]

The decoder inputs (the DDIM reverse process's memory, the CTC head's log-probabilities) are computed once, outside
the timings, as `recognize` computes them: per utterance for one-at-a-time decoding, per batch of
`decoding.batch_size` (`length_batches`) for batched decoding. Both implementations decode the same inputs with
the params' `decoding` (beam 5, ctc_weight of pose2gloss, length and repetition penalties):

(a) identical: each utterance's hypothesis, one at a time and batched, on every split of --splits, and the score
    of each item's best finished hypothesis (agreement to 1e-4);
(b) latency: ms per utterance decoded one at a time on ONE thread, the median over utterances of each one's median
    over --repeats, for the test utterances of 5 glosses and for all test utterances;
(c) throughput: test utterances per second decoded in batches of `decoding.batch_size` on --threads threads,
    median over --repeats.
Old and new alternate call by call, so a load shared with other jobs weighs on both alike. Targets of the issue:
<= 20 ms per 5-gloss utterance, >= 100 utterances/s batched. Results go to bench/results/decoding.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline import decoding  # noqa: E402
from pipeline.data import length_batches  # noqa: E402
from pipeline.decoding import CTCPrefixScorer, DecodeConfig, beam_search_reference, decode  # noqa: E402
from pipeline.nets.pose2gloss import Pose2Gloss  # noqa: E402
from pipeline.params import load_params  # noqa: E402
from pipeline.recognition import decode_config, pose2gloss_loader, pose2gloss_memory  # noqa: E402

CHECKPOINT, FEATURES, CORPUS = ROOT / "models/pose2gloss/best", ROOT / "data/features.zarr", ROOT / "data/corpus"
TARGET_MS, TARGET_UTT_S = 20.0, 100.0
Batch = dict  # memory (B, T, d), pad (B, T), ctc_logp (B, T, V), glosses (B strings)


def decoder_inputs(model: Pose2Gloss, load, split: str, batch_size: int, seed: int) -> tuple[list[Batch], list]:
    """One split's decoder inputs, one utterance a batch and `batch_size` utterances a batch, as `recognize`."""
    items, _ = load(split)
    memory_fn = pose2gloss_memory(model)

    def batches(groups: list[list]) -> list[Batch]:
        gen = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
        out = []
        for group in groups:
            memory, pad, ctc_logp = memory_fn(group, gen)
            out.append({"memory": memory, "pad": pad, "ctc_logp": ctc_logp, "glosses": [u.glosses for u in group]})
        return out

    return batches([[u] for u in items]), batches(length_batches(items, batch_size))


def old_and_new(model: Pose2Gloss, dcfg: DecodeConfig) -> dict:
    """name -> decode(batch) -> (B, <= max_len) token ids: the reference and the fast `decode`, same settings."""

    def old(batch: Batch) -> torch.Tensor:
        ctc = CTCPrefixScorer(batch["ctc_logp"], (~batch["pad"]).sum(1))
        return beam_search_reference(
            model.next_logits_fn(batch["memory"], batch["pad"]), len(batch["pad"]), dcfg.beam_size, dcfg.max_len,
            dcfg.length_penalty, dcfg.repetition_penalty, dcfg.temperature, batch["pad"].device, ctc, dcfg.ctc_weight,
        )  # fmt: skip

    def new(batch: Batch) -> torch.Tensor:
        ctc = CTCPrefixScorer(batch["ctc_logp"], (~batch["pad"]).sum(1))
        return decode(model.next_logits_fn(batch["memory"], batch["pad"]), len(batch["pad"]), dcfg,
                      batch["pad"].device, ctc)  # fmt: skip

    return {"old": old, "new": new}


def with_best_scores(fn, batch: Batch) -> tuple[list[list[int]], list[float]]:
    """Token ids per item and the score of its best finished hypothesis (read where both implementations pick it)."""
    seen, best = [], decoding._best_hypotheses

    def spy(finished: list, device) -> torch.Tensor:
        seen.append(finished)
        return best(finished, device)

    decoding._best_hypotheses = spy
    try:
        ids = fn(batch).tolist()
    finally:
        decoding._best_hypotheses = best
    return ids, [hyps[0][0] for hyps in seen[0]]


def identical(fns: dict, inputs: dict[str, tuple[list[Batch], list[Batch]]]) -> dict:
    """Per split and mode: utterances whose hypotheses agree, of all, and the largest best-score difference."""
    out = {}
    for split, modes in inputs.items():
        for mode, batches in zip(("one_at_a_time", "batched"), modes):
            same, total, diff = 0, 0, 0.0
            for batch in batches:
                (ids_old, s_old), (ids_new, s_new) = (with_best_scores(fns[k], batch) for k in ("old", "new"))
                same += sum(a == b for a, b in zip(ids_old, ids_new))
                total += len(ids_old)
                diff = max([diff, *(abs(a - b) for a, b in zip(s_old, s_new))])
            out[f"{split}/{mode}"] = {"identical": same, "utterances": total, "max_best_score_diff": diff}
            print(f"identical hypotheses {split} {mode}: {same} / {total}, best scores within {diff:.2e}", flush=True)
    return out


def latency(fns: dict, singles: list[Batch], repeats: int) -> dict:
    """Median ms per utterance decoded alone, for 5-gloss utterances and all, old and new alternating."""
    per_utt = {k: [[] for _ in singles] for k in fns}
    for rep in range(repeats + 1):  # the first round warms up
        for i, batch in enumerate(singles):
            for name in sorted(fns, reverse=rep % 2 == 1):  # alternate who goes first
                t0 = time.perf_counter()
                fns[name](batch)
                if rep:
                    per_utt[name][i].append(1000 * (time.perf_counter() - t0))
    five = [i for i, b in enumerate(singles) if len(b["glosses"][0].split()) == 5]
    out = {"five_gloss_utterances": len(five), "utterances": len(singles)}
    for subset, idx in (("five_gloss", five), ("all", range(len(singles)))):
        for name in fns:
            out[f"{subset}_{name}_ms"] = round(statistics.median(statistics.median(per_utt[name][i]) for i in idx), 2)
        out[f"{subset}_speedup"] = round(out[f"{subset}_old_ms"] / out[f"{subset}_new_ms"], 2)
    return out


def throughput(fns: dict, batches: list[Batch], repeats: int) -> dict:
    """Utterances per second decoding the split batch by batch, median over repeats, old and new alternating."""
    n = sum(len(b["glosses"]) for b in batches)
    rates = {k: [] for k in fns}
    for rep in range(repeats + 1):
        for name in sorted(fns, reverse=rep % 2 == 1):
            t0 = time.perf_counter()
            for batch in batches:
                fns[name](batch)
            if rep:
                rates[name].append(n / (time.perf_counter() - t0))
    out = {"utterances": n, "batches": len(batches)}
    out |= {f"{name}_utterances_per_s": round(statistics.median(r), 1) for name, r in rates.items()}
    return out | {"speedup": round(out["new_utterances_per_s"] / out["old_utterances_per_s"], 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--splits", nargs="+", default=["test", "val"], help="checked for identical hypotheses")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the batched throughput")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--checkpoint", default=str(CHECKPOINT), help="a published Stage I model (without suffix)")
    args = ap.parse_args()
    params = load_params(ROOT / "params.yaml")
    dcfg, batch_size = decode_config(params, "pose2gloss"), int(params["decoding"].get("batch_size", 32))
    model, load = pose2gloss_loader(args.checkpoint, FEATURES, CORPUS, args.device)
    splits = list(dict.fromkeys(["test", *args.splits]))
    inputs = {s: decoder_inputs(model, load, s, batch_size, dcfg.seed) for s in splits}
    fns = old_and_new(model, dcfg)
    result = {"device": args.device, "checkpoint": args.checkpoint, "decoding": vars(dcfg), "batch_size": batch_size,
              "identical": identical(fns, inputs)}  # fmt: skip
    torch.set_num_threads(1)
    result["one_at_a_time"] = latency(fns, inputs["test"][0], args.repeats) | {"torch_threads": 1}
    torch.set_num_threads(args.threads)
    result["batched"] = throughput(fns, inputs["test"][1], args.repeats) | {"torch_threads": args.threads}
    result["targets"] = {
        "five_gloss_ms": TARGET_MS, "five_gloss_met": result["one_at_a_time"]["five_gloss_new_ms"] <= TARGET_MS,
        "utterances_per_s": TARGET_UTT_S,
        "utterances_per_s_met": result["batched"]["new_utterances_per_s"] >= TARGET_UTT_S,
        "identical_met": all(v["identical"] == v["utterances"] for v in result["identical"].values()),
    }  # fmt: skip
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]  # the machine may be shared: context
    out = ROOT / "bench/results/decoding.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("one_at_a_time", "batched")}, indent=2))
    report(result)
    if not result["targets"]["identical_met"]:
        sys.exit("the fast beam search decoded some utterance differently from the reference")


def report(result: dict) -> None:
    """Whether each target of the issue is met."""
    one, batched, met = result["one_at_a_time"], result["batched"], result["targets"]
    ok = {True: "met", False: "NOT met"}
    print(
        f"{ok[met['five_gloss_met']]}: <= {TARGET_MS:g} ms per 5-gloss utterance one at a time on 1 thread: "
        f"{one['five_gloss_new_ms']} ms (old {one['five_gloss_old_ms']}, x{one['five_gloss_speedup']})"
    )
    print(
        f"{ok[met['utterances_per_s_met']]}: >= {TARGET_UTT_S:g} utterances/s batched: "
        f"{batched['new_utterances_per_s']} (old {batched['old_utterances_per_s']}, x{batched['speedup']})"
    )
    same = {k: f"{v['identical']}/{v['utterances']}" for k, v in result["identical"].items()}
    print(f"{ok[met['identical_met']]}: identical hypotheses {same}")


if __name__ == "__main__":
    main()
