"""What the two training stages share: the learning-rate schedule, params parsing, and the resumable work folder.

A stage trains in a work folder outside its DVC output (DVC deletes a stage's outputs before rerunning it, not
the work folder), resumes from `<work>/last.pt` when that checkpoint has the run's fingerprint, and publishes its
checkpoints to the output folder when it finishes.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import fields
from pathlib import Path

import torch


def lr_lambda(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warmup, then cosine decay from 1 to `min_ratio` (Table 2)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def split_params(section: dict, name: str, model_cls: type, train_cls: type, internal: set[str]) -> tuple[dict, dict]:
    """Split a params section into keyword arguments of a model config and a training config dataclass.

    Unknown keys are errors naming `name`; lists become tuples; `internal` fields cannot be set from params."""
    model_keys = {f.name for f in fields(model_cls)} - internal
    train_keys = {f.name for f in fields(train_cls)} - internal
    if unknown := sorted(set(section) - model_keys - train_keys):
        raise ValueError(f"{name} params: unknown keys {unknown}")

    def value(v):
        return tuple(v) if isinstance(v, list) else v

    return (
        {k: value(v) for k, v in section.items() if k in model_keys},
        {k: value(v) for k, v in section.items() if k in train_keys},
    )


def resume_point(
    last: Path, fingerprint: str, device: torch.device, live_dir: str | Path | None, stage: str
) -> dict | None:
    """The checkpoint to resume from, or None. A `last.pt` written by another run (other params, data or code) is
    deleted with every checkpoint beside it and the DVCLive folder, so the run starts afresh instead of
    continuing someone else's optimisation."""
    if not last.exists():
        return None
    ck = torch.load(last, map_location=device, weights_only=False)
    if ck.get("fingerprint") == fingerprint:
        return ck
    print(f"{stage}: {last} is from other params, data or code; starting afresh")
    for old in last.parent.glob("*.pt"):
        old.unlink()
    if live_dir is not None:
        shutil.rmtree(live_dir, ignore_errors=True)
    return None


def publish(work_dir: Path, out_dir: Path) -> None:
    """Finished: copy the checkpoints to the stage's output and drop the work folder (nothing left to resume)."""
    if work_dir == out_dir:
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    for ck in work_dir.glob("*.pt"):
        shutil.copy2(ck, out_dir / ck.name)
    shutil.rmtree(work_dir)
