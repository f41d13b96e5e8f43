"""What the two training stages share: the learning-rate schedule, params parsing, and the resumable work folder.

A stage trains in a work folder outside its DVC output (DVC deletes a stage's outputs before rerunning it, not
the work folder), resumes from `<work>/last.pt` when that checkpoint has the run's fingerprint, and publishes its
checkpoints to the output folder when it finishes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from dataclasses import asdict, fields
from pathlib import Path
from types import ModuleType

import torch

from pipeline.store import FrameStore


def lr_lambda(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warmup, then cosine decay from 1 to `min_ratio` (Table 2)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def adamw(
    params: list[torch.nn.Parameter], lr: float, weight_decay: float, betas: tuple[float, float]
) -> torch.optim.AdamW:
    """AdamW in its multi-tensor (foreach) form on every device. On CPU PyTorch defaults to a Python loop over the
    parameters, which gives the same numbers (checked bitwise) at 6 % more time per Stage I step; clip with
    `clip_grad_norm_(..., foreach=True)` for the same reason."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=betas, foreach=True)


def split_params(
    section: dict, name: str, model_cls: type, train_cls: type, internal: set[str], loss_names: tuple[str, ...] = ()
) -> tuple[dict, dict]:
    """Split a params section into keyword arguments of a model config and a training config dataclass.

    Unknown keys are errors naming `name`; lists become tuples; `internal` fields cannot be set from params. A
    training field whose default is a dict (per-loss weights or switches) is keyed by `loss_names`: a partial
    dict overrides the default key by key, and an unknown loss is an error."""
    model_keys = {f.name for f in fields(model_cls)} - internal
    train_keys = {f.name for f in fields(train_cls)} - internal
    if unknown := sorted(set(section) - model_keys - train_keys):
        raise ValueError(f"{name} params: unknown keys {unknown}")

    def value(v):
        return tuple(v) if isinstance(v, list) else v

    train = {k: value(v) for k, v in section.items() if k in train_keys}
    defaults = train_cls()
    for k, v in train.items():
        if isinstance(default := getattr(defaults, k), dict):
            if unknown := sorted(set(v) - set(loss_names)):
                raise ValueError(f"{name}.{k}: unknown losses {unknown}; losses are {list(loss_names)}")
            train[k] = {**default, **v}
    return {k: value(v) for k, v in section.items() if k in model_keys}, train


def run_fingerprint(
    configs: list, code: list[ModuleType], features: str | os.PathLike, corpus: str | os.PathLike,
    files: tuple[str | os.PathLike, ...] = (),
) -> str:  # fmt: skip
    """What a checkpoint must match to be resumed: the config dataclasses, the source of the `code` modules (a
    fixed bug must retrain, not resume a finished run), the store's index and statistics, the vocabulary, and
    the content of `files` (e.g. the frozen Stage I checkpoint)."""
    h = hashlib.sha256(json.dumps([asdict(c) for c in configs], sort_keys=True, default=str).encode())
    for module in code:
        h.update(Path(module.__file__).read_bytes())
    for f in files:
        h.update(hashlib.sha256(Path(f).read_bytes()).digest())
    store = FrameStore(features)
    h.update(store.offsets.tobytes())
    h.update(json.dumps(store.attrs, sort_keys=True, default=str).encode())
    h.update((Path(corpus) / "vocab.json").read_bytes())
    return h.hexdigest()


def save_atomic(obj: dict, path: Path) -> None:
    """torch.save through a temporary file: a run killed while saving never leaves a truncated checkpoint."""
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


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
