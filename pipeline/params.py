"""Reading params.yaml: stage modules call this; library code takes typed configs instead."""

from __future__ import annotations

import errno
import json
import os
import sys
from collections.abc import Callable
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


# the OSErrors that are about the machine, not the code: what the user must fix
MACHINE_ERRORS = {
    errno.ENOSPC: "no space left on the device: free some, then rerun",
    errno.EDQUOT: "the disk quota is exceeded: free some space, then rerun",
    errno.EROFS: "the output folder is on a read-only file system: make it writable, then rerun",
    errno.EACCES: "permission denied: make the output folder writable, then rerun",
}


def run_cli(main: Callable[[], None]) -> None:
    """Run a stage's `main`; a full disk or an unwritable output folder ends in one line naming the file, not a
    traceback. Stages write through temporary files and renames, so what they had written before stays intact,
    and a rerun resumes."""
    try:
        main()
    except OSError as err:
        if err.errno not in MACHINE_ERRORS:
            raise
        where = f" ({err.filename})" if err.filename else ""
        raise SystemExit(f"{Path(sys.argv[0]).stem}: {MACHINE_ERRORS[err.errno]}{where}") from None
