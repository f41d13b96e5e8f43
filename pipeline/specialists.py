"""The specialists of `pipeline.track_subsets`: one Stage I trained on each track subset alone, with the default
recipe otherwise (`pose2gloss` params, subset training off), each evaluated on `test` with its subset.

    python -m pipeline.specialists [--only NAME ...]      # `make specialists`; about 11 x the Stage I training time

Models go to `models/.specialists/<subset>/` (not a DVC output: the figures are what is kept), the figures to
`metrics/tracks_specialists.json`, written after each subset: a killed sweep resumes with the subsets not done
yet (a subset is redone when the params or the feature store it was trained on changed). The `tracks` stage
reads that file and says when it is stale.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from pipeline.nets.pose2gloss import Pose2Gloss
from pipeline.params import load_params, run_cli, write_metrics
from pipeline.recognition import decode_config
from pipeline.track_subsets import evaluate_subset, features_fingerprint, subsets
from pipeline.train_pose2gloss import configs_from_params, train


def train_specialists(
    params: dict, features: str | os.PathLike, corpus: str | os.PathLike, root: str | os.PathLike,
    out: str | os.PathLike, only: list[str] | None = None,
) -> dict:  # fmt: skip
    """Train and evaluate the specialist of every subset (or of `only`) not yet done; returns the figures."""
    # a specialist is trained on its subset alone, without the default's handling of missing tracks: no subset
    # training and no solo phase (a one-track specialist has no solo encoders anyway)
    section = {**(params.get("pose2gloss") or {}), "aug_track_subsets": [0.0, 0.0]}
    section.pop("solo_epochs", None)
    recipe = {"pose2gloss": section, "seed": int(params.get("seed", 0)), "decoding": params.get("decoding"),
              "temperature": params.get("temperature")}  # fmt: skip
    fingerprint = features_fingerprint(features)
    done = json.loads(Path(out).read_text()) if Path(out).exists() else {}
    if done.get("features") != fingerprint or done.get("recipe") != recipe:
        done = {}  # trained on other features or with another recipe: nothing there is comparable
    report = {"features": fingerprint, "recipe": recipe, "subsets": dict(done.get("subsets") or {})}
    dcfg = decode_config(params, "pose2gloss")
    for name, tracks in subsets().items():
        if (only and name not in only) or name in report["subsets"]:
            continue
        model_cfg, train_cfg = configs_from_params({**section, "tracks": list(tracks)}, recipe["seed"])
        folder = Path(root) / name.replace(" ", "_")
        summary = train(model_cfg, train_cfg, features, corpus, folder, work_dir=Path(root) / ".work" / folder.name)
        model = Pose2Gloss.from_checkpoint(folder / "best")
        result = evaluate_subset(model, tracks, features, corpus, dcfg)
        report["subsets"][name] = result | {"train_seconds": summary["train_seconds"],
                                            "best_val_wer": summary["best_val_wer"]}  # fmt: skip
        write_metrics(out, report)
        print(f"specialist {name}: test WER {result['wer']} (SE {result['wer_se']})")
    return report


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--features", default="data/features.zarr")
    ap.add_argument("--corpus", default="data/corpus")
    ap.add_argument("--root", default="models/.specialists")
    ap.add_argument("--out", default="metrics/tracks_specialists.json")
    ap.add_argument("--only", nargs="*", choices=list(subsets()), help="subsets to train (default: all)")
    args = ap.parse_args(argv)
    train_specialists(load_params(args.params), args.features, args.corpus, args.root, args.out, args.only)


if __name__ == "__main__":
    run_cli(main)
