"""`prepare` stage: build `data/corpus/` (manifest, vocabulary, videos, and what the source adds) and its preview.

python -m pipeline.prepare [--params params.yaml] [--out data/corpus]

`corpus.source` in params selects the source (`pipeline/corpus/sources.py`); its knobs are `corpus.<source>`.
"""

from __future__ import annotations

import argparse

from pipeline.corpus.preview import make_preview
from pipeline.corpus.sources import build_corpus
from pipeline.params import load_params, run_cli, write_metrics


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default="data/corpus")
    ap.add_argument("--metrics", default="metrics/corpus.json")
    ap.add_argument("--preview", default="metrics/corpus_preview.png")
    ap.add_argument("--workers", type=int, default=None, help="processes (default: SIGNX_WORKERS or all cores)")
    args = ap.parse_args(argv)

    params = load_params(args.params)
    if "corpus" not in params:
        raise SystemExit(f"{args.params} has no 'corpus' section")
    try:
        summary = build_corpus(params["corpus"], seed=params.get("seed", 0), out_dir=args.out, workers=args.workers)
    except (ValueError, FileNotFoundError) as err:  # a corpus source's files or params: what to fix, no traceback
        raise SystemExit(f"prepare: {str(err).strip()}") from None
    write_metrics(args.metrics, summary)
    shown = make_preview(args.out, args.preview)
    print(
        f"prepare: {summary['source']} corpus, {sum(summary['utterances'].values())} utterances "
        f"{summary['utterances']}, {sum(summary['frames'].values())} frames, {summary['n_glosses']} glosses, "
        f"{summary['generation_seconds']:.1f} s; preview of {shown} in {args.preview}"
    )


if __name__ == "__main__":
    run_cli(main)
