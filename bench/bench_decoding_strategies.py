"""WER of each decoding strategy on the trained Stage I (needs `make repro` first: it reads data/ and models/).

    python bench/bench_decoding_strategies.py [--checkpoint models/pose2gloss/best.pt]

Decodes `val`, `test` and `test_unseen` with the same model under each strategy (best-path CTC, greedy, Table 2
beam search, joint CTC / attention beam search at several CTC weights) and prints the table of
docs/POSE2GLOSS.md ("Decoding"); `val` is what chooses the default `decoding.ctc_weight`. Every other decoding
setting is params.yaml's; the DDIM draws are seeded, so a rerun gives the same figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline import scoring  # noqa: E402
from pipeline.data import load_split  # noqa: E402
from pipeline.evaluate import decode_config, pose2gloss_memory, recognize  # noqa: E402
from pipeline.nets.pose2gloss import Pose2Gloss  # noqa: E402
from pipeline.params import load_params  # noqa: E402
from pipeline.vocab import Vocab  # noqa: E402

SPLITS = ("val", "test", "test_unseen")
STRATEGIES = {  # name -> DecodeConfig overrides of the params' decoding section
    "best path of the CTC head": {"strategy": "ctc"},
    "greedy, decoder only": {"strategy": "greedy"},
    "Table 2 beam, decoder only (ctc_weight 0)": {"strategy": "beam", "ctc_weight": 0.0},
    "Table 2 beam, ctc_weight 0.3": {"strategy": "beam", "ctc_weight": 0.3},
    "Table 2 beam, ctc_weight 0.5": {"strategy": "beam", "ctc_weight": 0.5},
    "Table 2 beam, ctc_weight 0.7": {"strategy": "beam", "ctc_weight": 0.7},
    "Table 2 beam, ctc_weight 1.0": {"strategy": "beam", "ctc_weight": 1.0},
    "beam, ctc_weight 0.5, repetition penalty 1.0": {"strategy": "beam", "ctc_weight": 0.5, "repetition_penalty": 1.0},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=str(ROOT / "models/pose2gloss/best.pt"))
    args = ap.parse_args()
    params = load_params(ROOT / "params.yaml")
    base = decode_config(params)
    model = Pose2Gloss.from_checkpoint(args.checkpoint)
    vocab = Vocab.load(ROOT / "data/corpus/vocab.json")
    data = {s: load_split(ROOT / "data/features.zarr", ROOT / "data/corpus", vocab, s, max_len=model.cfg.max_len,
                          **model.data_options) for s in SPLITS}  # fmt: skip
    rows = {}
    print("| decoding | " + " | ".join(SPLITS) + " | test S / D / I | seconds |")
    print("|---|" + "---:|" * len(SPLITS) + "---|---:|")
    for name, overrides in STRATEGIES.items():
        dcfg = dataclasses.replace(base, **overrides)
        row, t0 = {}, time.perf_counter()
        for split in SPLITS:
            rec = recognize(model, pose2gloss_memory(model), data[split], vocab, dcfg, desc=split, topk=False)
            row[split] = scoring.wer(rec["references"], rec["hypotheses"])
        seconds = time.perf_counter() - t0
        rows[name] = {"overrides": overrides, "seconds": round(seconds, 1), **row}
        t = row["test"]
        sdi = f"{t['substitutions']} / {t['deletions']} / {t['insertions']}"
        print(f"| {name} | " + " | ".join(f"{row[s]['wer']:.1f}" for s in SPLITS) + f" | {sdi} | {seconds:.1f} |",
              flush=True)  # fmt: skip
    out = ROOT / "bench/results/decoding_strategies.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"checkpoint": args.checkpoint, "decoding": vars(base), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
