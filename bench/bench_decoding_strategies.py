"""WER of each decoding strategy on the trained models (needs `make repro` first: it reads data/ and models/).

    python bench/bench_decoding_strategies.py [--model pose2gloss|video2gloss]   (default: both)

Decodes `val`, `test` and `test_unseen` with the same model under each strategy (best-path CTC, greedy, Table 2
beam search, joint CTC / attention beam search at several CTC weights) and prints the tables of
docs/POSE2GLOSS.md and docs/VIDEO2POSE.md ("Decoding"); `val` is what chooses each model's
`decoding.ctc_weight`. Every other decoding setting is params.yaml's; the DDIM draws are seeded, so a rerun gives
the same figures. Each model's tracks are loaded once (for Video2Gloss: Video2Pose runs once per split), so the
seconds column is the decoding alone. Each model's table goes to bench/results/decoding_strategies_<model>.json.
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

from pipeline.params import load_params  # noqa: E402
from pipeline.recognition import (  # noqa: E402
    MODELS,
    decode_config,
    pose2gloss_loader,
    score_splits,
    video2gloss_loader,
)

SPLITS = ("val", "test", "test_unseen")
STRATEGIES = {  # name -> DecodeConfig overrides of the params' decoding section
    "best path of the CTC head": {"strategy": "ctc"},
    "greedy, decoder only": {"strategy": "greedy"},
    "Table 2 beam, decoder only (ctc_weight 0)": {"strategy": "beam", "ctc_weight": 0.0},
    **{f"Table 2 beam, ctc_weight {w}": {"strategy": "beam", "ctc_weight": w} for w in (0.3, 0.5, 0.6, 0.7, 0.8)},
    "Table 2 beam, ctc_weight 1.0": {"strategy": "beam", "ctc_weight": 1.0},
    "beam, ctc_weight 0.5, repetition penalty 1.0": {"strategy": "beam", "ctc_weight": 0.5, "repetition_penalty": 1.0},
}


def loaded(model: str) -> tuple:
    """The pipeline's trained Stage I checkpoint and each split's tracks it reads, loaded once for every strategy:
    the fused store's for pose2gloss, Video2Pose's predictions (run once) for video2gloss."""
    corpus, p2g = ROOT / "data/corpus", ROOT / "models/pose2gloss/best"
    if model == "pose2gloss":
        stage1, load = pose2gloss_loader(p2g, ROOT / "data/features.zarr", corpus)
    else:
        stage1, load = video2gloss_loader(ROOT / "models/video2pose/best", p2g, corpus, ROOT / "data/frame_cache")
    return stage1, {split: load(split) for split in SPLITS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=MODELS, action="append", help="repeatable; default: every model")
    args = ap.parse_args()
    params = load_params(ROOT / "params.yaml")
    for model in args.model or MODELS:
        base = decode_config(params, model)
        stage1, tracks = loaded(model)
        rows = {}
        print(f"\n{model}\n\n| decoding | " + " | ".join(SPLITS) + " | test S / D / I | seconds |")
        print("|---|" + "---:|" * len(SPLITS) + "---|---:|")
        for name, overrides in STRATEGIES.items():
            t0 = time.perf_counter()
            dcfg = dataclasses.replace(base, **overrides)
            metrics, _ = score_splits(stage1, tracks.__getitem__, ROOT / "data/corpus", dcfg, SPLITS)
            seconds = time.perf_counter() - t0
            row = {s: {k: metrics[s][k] for k in ("wer", "substitutions", "deletions", "insertions")} for s in SPLITS}
            rows[name] = {"overrides": overrides, "seconds": round(seconds, 1), **row}
            t = row["test"]
            sdi = f"{t['substitutions']} / {t['deletions']} / {t['insertions']}"
            print(f"| {name} | " + " | ".join(f"{row[s]['wer']:.1f}" for s in SPLITS) + f" | {sdi} | {seconds:.1f} |",
                  flush=True)  # fmt: skip
        out = ROOT / f"bench/results/decoding_strategies_{model}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"model": model, "decoding": vars(base), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
