"""Stage I with only some of the five tracks: the default model's WER on `test` for every single track and every
leave-one-out set (and all five), beside specialists trained on each set alone.

    python -m pipeline.track_subsets              # the `tracks` stage: metrics/tracks.json (+ tracks.md, a table)
    python -m pipeline.track_subsets specialists  # the sweep (`make specialists`): one Stage I per set, trained on
                                                  # that set alone -> metrics/tracks_specialists.json (committed)

A subset is evaluated by masking the other tracks on every frame, as a user's input without them is read. The
bound checked is the one users rely on: the default model with a subset scores within `BOUND` x the WER of the
specialist of that subset, and with all five loses at most one standard error against the all-five specialist (the model
trained as before, without subsets). The standard error is the ratio estimator's: WER = sum(e_i) / sum(n_i) over
utterances with e_i errors in n_i reference glosses, SE = sqrt(N / (N - 1) * sum((e_i - WER n_i)^2)) / sum(n_i).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
from pathlib import Path

from pipeline import scoring
from pipeline.data import load_split
from pipeline.decoding import DecodeConfig
from pipeline.layout import TRACK_ORDER
from pipeline.nets.pose2gloss import Pose2Gloss
from pipeline.params import load_params, run_cli, write_metrics
from pipeline.recognition import decode_config, pose2gloss_memory, recognize
from pipeline.vocab import Vocab

BOUND = 1.2  # the default model with a subset: at most this x the specialist's WER


def subsets() -> dict[str, tuple[str, ...]]:
    """{name: tracks}: all five, each track alone, each left out."""
    out = {"all five": tuple(TRACK_ORDER)}
    out |= {f"only {t}": (t,) for t in TRACK_ORDER}
    out |= {f"without {t}": tuple(u for u in TRACK_ORDER if u != t) for t in TRACK_ORDER}
    return out


def wer_with_error(references: list[str], hypotheses: list[str]) -> dict[str, float]:
    """Corpus WER (x 100) and its standard error over utterances (module docstring)."""
    errors, lengths = [], []
    for ref, hyp in zip(references, hypotheses):
        w = scoring.wer([ref], [hyp])
        errors.append(w["substitutions"] + w["deletions"] + w["insertions"])
        lengths.append(w["reference_glosses"])
    n, total = len(errors), sum(lengths)
    rate = sum(errors) / total
    spread = sum((e - rate * m) ** 2 for e, m in zip(errors, lengths))
    se = math.sqrt(n / (n - 1) * spread) / total if n > 1 else float("nan")
    return {"wer": round(100 * rate, 2), "wer_se": round(100 * se, 2), "utterances": n}


def evaluate_subset(
    model: Pose2Gloss, tracks: tuple[str, ...], features: str | os.PathLike, corpus: str | os.PathLike,
    dcfg: DecodeConfig, split: str = "test", batch_size: int = 32,
) -> dict[str, float]:  # fmt: skip
    """WER (and its SE) of `model` on `split` with only `tracks` present."""
    vocab = Vocab.load(Path(corpus) / "vocab.json")
    options = {**model.data_options, "tracks": tracks}
    data = load_split(features, corpus, vocab, split, max_len=model.cfg.max_len, track_dims=model.cfg.track_dims,
                      **options)  # fmt: skip
    rec = recognize(model, pose2gloss_memory(model), data, vocab, dcfg, batch_size, desc=", ".join(tracks), topk=False)
    return wer_with_error(rec["references"], rec["hypotheses"])


def compare(default: dict, specialists: dict) -> dict:
    """Per subset: the default model's and the specialist's WER, their ratio and whether the bound holds."""
    out = {}
    for name, d in default.items():
        s = (specialists.get("subsets") or {}).get(name)
        row = {"tracks": list(subsets()[name]), "default": d, "specialist": s}
        if s is not None:
            ratio = d["wer"] / max(s["wer"], 1e-9)
            row["ratio"] = round(ratio, 3)
            row["within_bound"] = bool(d["wer"] <= s["wer"] + s["wer_se"] if name == "all five" else ratio <= BOUND)
        out[name] = row
    return out


def table(rows: dict) -> str:
    """The comparison as a Markdown table (README, docs/POSE2GLOSS.md)."""
    lines = [
        "| tracks present | default model WER (SE) | specialist WER (SE) | ratio | bound |",
        "|---|---:|---:|---:|---|",
    ]
    for name, r in rows.items():
        d, s = r["default"], r["specialist"]
        spec = f"{s['wer']:.1f} ({s['wer_se']:.1f})" if s else "not trained"
        bound = "—" if s is None else ("<= specialist + 1 SE" if name == "all five" else f"<= {BOUND} x")
        mark = "" if s is None else (" ✓" if r["within_bound"] else " ✗")
        lines.append(
            f"| {name} | {d['wer']:.1f} ({d['wer_se']:.1f}) | {spec} | {r.get('ratio', '—')} | {bound}{mark} |"
        )
    return "\n".join(lines) + "\n"


def features_fingerprint(features: str | os.PathLike) -> str:
    """A hash of the feature store's attributes (layout, backends, train statistics): the specialists were trained
    on this store only if it is unchanged."""
    from pipeline.store import FrameStore

    attrs = json.dumps(FrameStore(features).attrs, sort_keys=True, default=str)
    return hashlib.sha256(attrs.encode()).hexdigest()[:16]


def run_stage(
    model_path: str | os.PathLike, features: str | os.PathLike, corpus: str | os.PathLike, dcfg: DecodeConfig,
    specialists_path: str | os.PathLike, batch_size: int = 32,
) -> dict:  # fmt: skip
    """The `tracks` stage: the default model on every subset, compared with the specialists' figures."""
    model = Pose2Gloss.from_checkpoint(model_path)
    default = {name: evaluate_subset(model, tracks, features, corpus, dcfg, batch_size=batch_size)
               for name, tracks in subsets().items()}  # fmt: skip
    path = Path(specialists_path)
    specialists = json.loads(path.read_text()) if path.exists() else {}
    rows = compare(default, specialists)
    stale = bool(specialists) and specialists.get("features") != features_fingerprint(features)
    checked = [r["within_bound"] for r in rows.values() if "within_bound" in r]
    return {
        "split": "test",
        "bound": BOUND,
        "subsets": rows,
        "all_within_bound": bool(checked) and all(checked) and not stale,
        "specialists": "missing: run `make specialists`" if not specialists else ("stale: trained on other features"
                                                                                   if stale else "current"),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--model", default="models/pose2gloss/best")
    ap.add_argument("--features", default="data/features.zarr")
    ap.add_argument("--corpus", default="data/corpus")
    ap.add_argument("--specialists", default="metrics/tracks_specialists.json")
    ap.add_argument("--out", default="metrics/tracks.json")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    dcfg = decode_config(params, "pose2gloss")
    batch_size = int((params.get("decoding") or {}).get("batch_size", 32))
    report = run_stage(args.model, args.features, args.corpus, dcfg, args.specialists, batch_size)
    write_metrics(args.out, report)
    Path(args.out).with_suffix(".md").write_text(table(report["subsets"]))
    print(table(report["subsets"]) + f"specialists: {report['specialists']}")


if __name__ == "__main__":
    run_cli(main)
