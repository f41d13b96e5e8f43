"""What the two training stages share: the learning-rate schedule, params parsing, and `TrainingRun`, which owns
a run's work folder, resume, checkpoints, curves, publishing and summary; each stage keeps its own step loop.

A stage trains in a work folder outside its DVC output (DVC deletes a stage's outputs before rerunning it, not
the work folder). `last.pt` there holds everything a killed run needs to continue bit-identically (model,
optimiser, schedule, RNG streams, position) and the run's fingerprint (params, data, source code); a run resumes
from it only when the fingerprint matches. What a run publishes to its output folder is weights and their config
(`pipeline.checkpoints`: safetensors + JSON): no optimiser state, no fingerprint, so editing a comment in the code
changes no output.

Conventions both stages follow:
- randomness drawn anew at each batch is seeded by its position: `run.step_rng()` (NumPy) and
  `run.step_generator()` (torch), from (seed, epoch, batch); a stream that runs across steps is handed to the run
  (`TrainingRun(..., generators=...)`) and saved in `last.pt`; the global torch RNG (dropout) is saved too;
- a loss runs when its switch is on and its weight is not zero (`active_losses`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import resource
import shutil
import time
from dataclasses import asdict, fields
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from tqdm import tqdm

from pipeline.checkpoints import as_tuples, save_model
from pipeline.store import FrameStore


def lr_lambda(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warmup, then cosine decay from 1 to `min_ratio` (Table 2)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def stage_parser(doc: str, model: str) -> argparse.ArgumentParser:
    """The command line both training stages share, defaulting to the pipeline's paths for `model`."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--features", default="data/features.zarr")
    ap.add_argument("--corpus", default="data/corpus")
    ap.add_argument("--out", default=f"models/{model}", help="where the weights are published")
    ap.add_argument("--work", default=f"models/.work/{model}", help="the run's state while training (resume point)")
    ap.add_argument("--metrics", default=f"metrics/{model}_train.json")
    ap.add_argument("--live", default=f"metrics/train_{model}", help="DVCLive curves")
    return ap


def optimiser(
    params: list[torch.nn.Parameter], cfg, n_items: int
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR, int]:
    """AdamW and its schedule (`lr_lambda`) for a stage's training config `cfg` (lr, weight_decay, betas,
    warmup_frac, min_lr_ratio, epochs, batch_size, grad_accum) over `n_items` training items; and the run's
    number of optimiser steps."""
    opt = adamw(params, cfg.lr, cfg.weight_decay, cfg.betas)
    total = max(1, cfg.epochs * math.ceil(n_items / cfg.batch_size) // cfg.grad_accum)
    warmup = max(1, int(cfg.warmup_frac * total))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_lambda(step, total, warmup, cfg.min_lr_ratio))
    return opt, sched, total


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

    section = as_tuples(section)
    train = {k: v for k, v in section.items() if k in train_keys}
    defaults = train_cls()
    for k, v in train.items():
        if isinstance(default := getattr(defaults, k), dict):
            if unknown := sorted(set(v) - set(loss_names)):
                raise ValueError(f"{name}.{k}: unknown losses {unknown}; losses are {list(loss_names)}")
            train[k] = {**default, **v}
    return {k: v for k, v in section.items() if k in model_keys}, train


def run_fingerprint(
    configs: list, code: list[ModuleType], features: str | os.PathLike, corpus: str | os.PathLike,
    files: tuple[str | os.PathLike, ...] = (),
) -> str:  # fmt: skip
    """What `last.pt` must match to be resumed: the config dataclasses, the source of the `code` modules (a fixed
    bug must retrain, not resume a finished run), the store's index and statistics, the vocabulary, and the
    content of `files` (e.g. the frozen Stage I model). It lives in the work folder only, never in an output."""
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


def active_losses(switches: dict[str, bool], weights: dict[str, float]) -> set[str]:
    """The losses a step computes: switched on (`losses.<name>`) with a non-zero weight (`weights.<name>`)."""
    return {k for k, w in weights.items() if w and switches.get(k, True)}


class TrainingRun:
    """One training run of a stage: resume, checkpoints, DVCLive curves, publishing and the summary.

    The stage builds its model, optimiser and schedule, hands them over, then runs its own loop:

        run = TrainingRun("train_x", work, out, fingerprint, total, seed, model=m, optimizer=o, lr_scheduler=s)
        while run.epoch < epochs:
            order = ...
            for idx in run.remaining(order):
                losses = ...                      # the stage's own losses
                if run.backward(loss, losses, len(order), grad_accum):
                    if run.step(params, clip):    # True: max_steps reached (a test's simulated kill)
                        return run.stopped()
            run.end_epoch({"val/wer": ...})
        return run.finish(device)

    `quarters=True` also publishes the weights at 25 / 50 / 75 / 100 % of the steps (`q25` ... `q100`, Fig. 3).
    """

    def __init__(
        self, stage: str, work_dir: str | os.PathLike, out_dir: str | os.PathLike, fingerprint: str, total_steps: int,
        seed: int, live_dir: str | os.PathLike | None = None, max_steps: int | None = None, quarters: bool = False,
        checkpoint_every: int = 50, generators: dict[str, torch.Generator] | None = None, **stateful,
    ) -> None:  # fmt: skip
        self.stage, self.fingerprint, self.total, self.seed = stage, fingerprint, total_steps, seed
        self.work, self.out = Path(work_dir), Path(out_dir)
        self.work.mkdir(parents=True, exist_ok=True)
        self.max_steps, self.checkpoint_every = max_steps, checkpoint_every
        self.stateful, self.generators = stateful, generators or {}
        self.quarters = {round(total_steps * q / 4): f"q{25 * q}" for q in (1, 2, 3, 4)} if quarters else {}
        # "sums": the epoch's training losses so far, checkpointed so that a resumed epoch's means are the whole's
        self.state = {"epoch": 0, "batch": 0, "step": 0, "best_wer": float("inf"), "history": [], "sums": {}}
        self.t0, self.steps_this_run = time.perf_counter(), 0
        self._resume()
        self.seconds_before = self.state.get("seconds", 0.0)  # spent by earlier processes of a resumed run
        self.live = self._open_curves(live_dir)
        self.bar = tqdm(total=total_steps, initial=self.state["step"], desc=stage, unit="step", mininterval=2.0)

    @property
    def epoch(self) -> int:
        return self.state["epoch"]

    @property
    def batch(self) -> int:
        return self.state["batch"]

    @property
    def step_count(self) -> int:
        return self.state["step"]

    def _resume(self) -> bool:
        """Continue from `last.pt` when it has this run's fingerprint; otherwise clear the work folder so that
        nobody else's optimisation is continued. `last.pt` is read without unpickling code."""
        last = self.work / "last.pt"
        if not last.exists():
            return False
        try:
            ck = torch.load(last, map_location="cpu", weights_only=True)
        except Exception as err:  # a truncated or foreign file: never resumed, never executed
            print(f"{self.stage}: {last} cannot be read safely ({type(err).__name__}); starting afresh")
            ck = {}
        if ck.get("fingerprint") != self.fingerprint:
            print(f"{self.stage}: {last} is from other params, data or code; starting afresh")
            shutil.rmtree(self.work)
            self.work.mkdir(parents=True)
            return False
        for name, obj in self.stateful.items():
            obj.load_state_dict(ck[name])
        for name, gen in self.generators.items():
            gen.set_state(ck["generators"][name])
        torch.set_rng_state(ck["torch_rng"])
        self.state = ck["state"]
        return True

    def _open_curves(self, live_dir: str | os.PathLike | None):
        """DVCLive curves rewritten from the run's own history (saved in `last.pt`), so that a resumed run's curves
        are those of an uninterrupted one whatever a killed run left in `live_dir` (or DVC deleted from it)."""
        if live_dir is None:
            return None
        from dvclive import Live

        live = Live(str(live_dir), resume=False, save_dvc_exp=False, dvcyaml=None)  # resume=False: emptied first
        for record in self.state["history"]:
            for k, v in record.items():
                live.log_metric(k, v)
            live.next_step()
        return live

    def step_rng(self) -> np.random.Generator:
        """NumPy randomness for the current batch, seeded by its position (a resumed run draws the same)."""
        return np.random.default_rng([self.seed, self.epoch, self.batch])

    def step_generator(self) -> torch.Generator:
        """torch randomness for the current batch, seeded by its position (a resumed run draws the same)."""
        return torch.Generator().manual_seed(hash((self.seed, self.epoch, self.batch)) & 0xFFFFFFFF)

    def remaining(self, order: list) -> list:
        """The batches of this epoch's `order` not yet trained on (all of them unless resumed mid-epoch)."""
        return order[self.batch :]

    def backward(self, loss: torch.Tensor, losses: dict[str, torch.Tensor], n_batches: int, grad_accum: int) -> bool:
        """Backpropagate one batch's (weighted, accumulation-scaled) loss and record its parts; True when the
        optimiser should step (every `grad_accum` batches and at the end of the epoch)."""
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{self.stage}: loss became {loss.item()} at step {self.step_count}")
        loss.backward()
        for k, v in losses.items():
            self.state["sums"][k] = self.state["sums"].get(k, 0.0) + v.item()
        self.state["batch"] += 1
        return self.batch % grad_accum == 0 or self.batch == n_batches

    def step(self, params: list[torch.nn.Parameter], clip: float) -> bool:
        """Clip, step the optimiser and the schedule, checkpoint; True when `max_steps` is reached (`last.pt`
        saved: what a killed run leaves)."""
        opt, sched = self.stateful["optimizer"], self.stateful["lr_scheduler"]
        torch.nn.utils.clip_grad_norm_(params, clip, foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        self.state["step"] += 1
        self.steps_this_run += 1
        self.bar.update()
        if self.step_count in self.quarters:
            self._save_weights(self.quarters[self.step_count])
        if self.step_count % self.checkpoint_every == 0:
            self._save_last()
        if self.max_steps is not None and self.steps_this_run >= self.max_steps:
            self._save_last()
            self.bar.close()
            return True
        return False

    def stopped(self) -> dict:
        return {"stopped_at_step": self.step_count}

    def end_epoch(self, validation: dict[str, float]) -> None:
        """Log the epoch's mean training losses (over all its batches, those before a resume included), `validation`
        (`val/wer` chooses `best`) and the learning rate; then move to the next epoch and save `last.pt`."""
        record = {f"train/{k}": v / max(1, self.batch) for k, v in self.state["sums"].items()} | validation
        if "val/wer" in validation and validation["val/wer"] < self.state["best_wer"]:
            self.state["best_wer"] = validation["val/wer"]
            self._save_weights("best")
        record["lr"] = self.stateful["lr_scheduler"].get_last_lr()[0]
        self.state["history"].append(record)
        if self.live is not None:
            for k, v in record.items():
                self.live.log_metric(k, v)
            self.live.next_step()
        self.state["epoch"] += 1
        self.state["batch"] = 0
        self.state["sums"] = {}
        self._save_last()

    def finish(self, device: torch.device) -> dict:
        """Publish `best` (the last weights when nothing was validated) and the quarters to the output folder;
        the summary every stage reports. The work folder keeps `last.pt`: the finished run's state."""
        self.bar.close()
        if not self._weights("best").exists():
            self._save_weights("best")
        if self.live is not None:
            self.live.end()
        if self.work != self.out:
            self.out.mkdir(parents=True, exist_ok=True)
            for f in sorted(self.work.glob("*.safetensors")) + sorted(self.work.glob("*.json")):
                shutil.copy2(f, self.out / f.name)
        return {
            "epochs": self.epoch,
            "steps": self.step_count,
            "best_val_wer": self.state["best_wer"],
            "final": self.state["history"][-1] if self.state["history"] else {},
            "train_seconds": round(self._seconds(), 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "device": str(device),
        }

    def _seconds(self) -> float:
        """Training time of the whole run: this process's and that of the processes it resumed from, up to their
        last checkpoint (the steps a killed process did after it are redone, and counted, here)."""
        return self.seconds_before + time.perf_counter() - self.t0

    def _weights(self, name: str) -> Path:
        return self.work / f"{name}.safetensors"

    def _save_weights(self, name: str) -> None:
        model = self.stateful["model"]
        save_model(self.work / name, model.state_dict(), model.published_config())

    def _save_last(self) -> None:
        """`last.pt` through a temporary file: a run killed while saving never leaves a truncated checkpoint."""
        ck = {name: obj.state_dict() for name, obj in self.stateful.items()}
        ck |= {"generators": {n: g.get_state() for n, g in self.generators.items()}, "torch_rng": torch.get_rng_state()}
        self.state["seconds"] = self._seconds()
        ck |= {"state": self.state, "fingerprint": self.fingerprint}
        tmp = self.work / "last.pt.tmp"
        torch.save(ck, tmp)
        os.replace(tmp, self.work / "last.pt")
