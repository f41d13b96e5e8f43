"""Reading params.yaml: stage modules call this; library code takes typed configs instead."""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

DEFAULT_PARAMS = "params.yaml"


def load_params(path: str | os.PathLike = DEFAULT_PARAMS) -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no params file at {path} (run from the repository root)")
    with path.open(encoding="utf-8") as f:
        params = yaml.safe_load(f) or {}
    if not isinstance(params, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return params


def write_metrics(path: str | os.PathLike, data: dict) -> None:
    """Write a stage's metrics / report file (JSON, indented, parent folders created), atomically: a killed
    writer leaves the previous file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
