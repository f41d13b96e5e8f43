"""`tables` stage: the paper's Table 3 and Table 5 from this project's own runs, beside the paper's numbers.

    python -m pipeline.tables              # writes metrics/tables.md (the DVC stage)
    python -m pipeline.tables collect      # gathers Table 5 cells from `dvc exp show --json` into
                                           # metrics/table5_runs.json (git-tracked), then `dvc repro tables`
    python -m pipeline.tables ablations    # a markdown table of the `abl-*` experiments' best val WER

Table 3 (BLEU / Top-5 / Best, plus WER) comes from `metrics/pose2gloss.json` and `metrics/video2gloss.json` of the
current workspace, on `test` and `test_unseen`. Table 5 needs one experiment per column (isolated recognition at
100 and 300 glosses: Top-1; continuous at 1000 and 2000 glosses: WER); `collect` picks, for each column, the
experiments whose `corpus.synthetic.task` and `corpus.synthetic.n_glosses` match and keeps the most recent one.
The README gives the queue commands that fill every cell. Cells without a run say so; nothing is filled in by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from pipeline.params import run_cli

# The paper's numbers (ASLLRP, Tables 3 and 5), quoted for comparison only.
PAPER_TABLE3 = {"pose2gloss": {"bleu": 10.60, "top5": 23.42, "best": 76.13},
                "video2gloss": {"bleu": 12.01, "top5": 21.86, "best": 84.67}}  # fmt: skip
PAPER_TABLE5 = {
    "isolated-100": ("Top-1", 68.02), "isolated-300": ("Top-1", 62.15),
    "continuous-1000": ("WER", 18.6), "continuous-2000": ("WER", 24.3),
}  # fmt: skip
TABLE5_COLUMNS = {  # column -> (corpus.synthetic.task, corpus.synthetic.n_glosses, metric key)
    "isolated-100": ("isolated", 100, "top1"), "isolated-300": ("isolated", 300, "top1"),
    "continuous-1000": ("continuous", 1000, "wer"), "continuous-2000": ("continuous", 2000, "wer"),
}  # fmt: skip
SOURCE_NAMES = {"synthetic": "synthetic signer", "asllrp": "ASLLRP", "wlasl": "WLASL"}
MODELS = {"pose2gloss": "Pose2Gloss", "video2gloss": "Video2Gloss"}


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


def table3(metrics_dir: Path) -> list[str]:
    lines = [
        "| Model | Split | BLEU | Top-5 | Best | WER | Paper BLEU | Paper Top-5 | Paper Best |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model, title in MODELS.items():
        m = _read(metrics_dir / f"{model}.json")
        paper = PAPER_TABLE3[model]
        for split in ("test", "test_unseen"):
            s = (m or {}).get(split)
            if s is None:
                cells = ["not run"] + ["—"] * 3
            else:
                cells = [_fmt(s["bleu"]), _fmt(s["top5"]), _fmt(s["best"]), _fmt(s["wer"])]
            lines.append(f"| {title} | {split} | " + " | ".join(cells)
                         + f" | {paper['bleu']:.2f} | {paper['top5']:.2f} | {paper['best']:.2f} |")  # fmt: skip
    base = (_read(metrics_dir / "pose2gloss.json") or {}).get("baseline_most_frequent_sequence")
    for split in ("test", "test_unseen"):
        if base and split in base:
            lines.append(f"| always the most frequent train sequence | {split} | {_fmt(base[split]['bleu'])} | — | — "
                         f"| {_fmt(base[split]['wer'])} | | | |")  # fmt: skip
    return lines


def table5(runs: dict | None) -> list[str]:
    lines = [
        "| Setting | Metric | Pose2Gloss (ours) | Video2Gloss (ours) | SignX paper | Experiment |",
        "|---|---|---:|---:|---:|---|",
    ]
    for column, (task, n, key) in TABLE5_COLUMNS.items():
        run = (runs or {}).get(column)
        name, paper = PAPER_TABLE5[column]
        ours = [_fmt(((run or {}).get(m) or {}).get("test", {}).get(key)) for m in MODELS]
        hint = f"`-S corpus.synthetic.task={task} -S corpus.synthetic.n_glosses={n}`"
        where = run["experiment"] if run else f"not run ({hint})"
        lines.append(f"| {task}, {n} glosses | {name} | {ours[0]} | {ours[1]} | {paper:.2f} | {where} |")
    return lines


def render(metrics_dir: str | os.PathLike = "metrics") -> str:
    metrics_dir = Path(metrics_dir)
    corpus = _read(metrics_dir / "corpus.json") or {}
    utts = corpus.get("utterances", {})
    source = corpus.get("source", "synthetic")
    desc = (
        f"{SOURCE_NAMES.get(source, source)} corpus: {corpus.get('n_glosses', '?')} glosses, "
        f"{corpus.get('signers_seen', '?')} seen + "
        f"{corpus.get('signers_unseen', '?')} unseen signers, {utts.get('test', '?')} test / "
        f"{utts.get('test_unseen', '?')} test_unseen utterances"
    )
    ev = _read(metrics_dir / "pose2gloss.json") or {}
    dec = ev.get("decoding", {})
    shown = ("strategy", "beam_size", "ctc_weight", "length_penalty", "repetition_penalty", "temperature")
    decoding = ", ".join(f"{k} {dec[k]}" for k in shown if k in dec)
    v2g_weight = (_read(metrics_dir / "video2gloss.json") or {}).get("decoding", {}).get("ctc_weight")
    if decoding and v2g_weight is not None and v2g_weight != dec.get("ctc_weight"):
        decoding += f" (Video2Gloss: ctc_weight {v2g_weight})"  # decoding.ctc_weight per model
    out = [
        "# Tables (generated by the `tables` stage; do not edit)",
        "",
        f"Our numbers: {desc}; decoding: {decoding or 'n/a'}. The paper's numbers are on ASLLRP (2000 glosses, "
        "100 test utterances), a different corpus: compare trends, not values. Definitions: README, *Metrics*.",
        "",
        "## Table 3: Pose2Gloss and Video2Gloss",
        "",
        *table3(metrics_dir),
        "",
        "## Table 5: vocabulary size (isolated: Top-1 accuracy; continuous: WER)",
        "",
        *table5(_read(metrics_dir / "table5_runs.json")),
        "",
    ]
    return "\n".join(out)


def _walk_experiments(node, found: list[dict]) -> None:
    """Every record of `dvc exp show --json` that carries params and metrics (the layout nests them)."""
    if isinstance(node, dict):
        data = node.get("data")
        if isinstance(data, dict) and "params" in data and "metrics" in data:
            found.append({"name": node.get("name") or node.get("rev"), "rev": node.get("rev"),
                          "timestamp": data.get("timestamp") or "", "params": data["params"],
                          "metrics": data["metrics"]})  # fmt: skip
        for v in node.values():
            _walk_experiments(v, found)
    elif isinstance(node, list):
        for v in node:
            _walk_experiments(v, found)


def collect(exp_show: list | dict) -> dict:
    """Table 5 cells from parsed `dvc exp show --json` output: the latest matching experiment per column."""
    found: list[dict] = []
    _walk_experiments(exp_show, found)
    runs: dict = {}
    for e in sorted(found, key=lambda e: str(e["timestamp"])):
        params = ((e["params"] or {}).get("params.yaml") or {}).get("data") or {}
        corpus = (params.get("corpus") or {}).get("synthetic") or {}
        metrics = {m: ((e["metrics"] or {}).get(f"metrics/{m}.json") or {}).get("data") for m in MODELS}
        if not metrics["pose2gloss"]:
            continue
        for column, (task, n, _) in TABLE5_COLUMNS.items():
            if corpus.get("task") == task and corpus.get("n_glosses") == n:
                runs[column] = {"experiment": str(e["name"]), "rev": e["rev"], **metrics}
    return runs


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= _flatten(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def ablation_table(exp_show: list | dict, prefix: str = "abl-") -> list[str]:
    """A markdown table of the Stage I experiments named `<prefix>...`: the params that differ from the
    workspace's and their best validation WER (from `metrics/pose2gloss_train.json`)."""
    found: list[dict] = []
    _walk_experiments(exp_show, found)

    def params(e: dict) -> dict:
        return _flatten(((e["params"] or {}).get("params.yaml") or {}).get("data") or {})

    def val_wer(e: dict) -> float | None:
        return (((e["metrics"] or {}).get("metrics/pose2gloss_train.json") or {}).get("data") or {}).get("best_val_wer")

    base = next((e for e in found if e["rev"] == "workspace"), None)
    base_params = params(base) if base else {}
    lines = ["| experiment | changed params | best val WER |", "|---|---|---:|"]
    if base:
        lines.append(f"| defaults (workspace) | — | {_fmt(val_wer(base))} |")
    for e in sorted((e for e in found if str(e["name"]).startswith(prefix)), key=lambda e: str(e["name"])):
        changed = {k: v for k, v in params(e).items() if base_params.get(k) != v}
        desc = ", ".join(f"`{k}={json.dumps(v)}`" for k, v in sorted(changed.items())) or "—"
        lines.append(f"| {e['name']} | {desc} | {_fmt(val_wer(e))} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", nargs="?", default="render", choices=["render", "collect", "ablations"])
    ap.add_argument("--metrics-dir", default="metrics")
    args = ap.parse_args(argv)
    metrics_dir = Path(args.metrics_dir)
    if args.command in ("collect", "ablations"):
        proc = subprocess.run(
            [sys.executable, "-m", "dvc", "exp", "show", "--json", "--all-commits"], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise SystemExit(f"dvc exp show failed:\n{proc.stderr}")
        if args.command == "ablations":
            print("\n".join(ablation_table(json.loads(proc.stdout))))
            return
        runs = collect(json.loads(proc.stdout))
        (metrics_dir / "table5_runs.json").write_text(json.dumps(runs, indent=2) + "\n")
        print(f"tables collect: {len(runs)} of {len(TABLE5_COLUMNS)} Table 5 columns have a run: {sorted(runs)}")
        return
    text = render(metrics_dir)
    (metrics_dir / "tables.md").write_text(text)
    print(text)


if __name__ == "__main__":
    run_cli(main)
