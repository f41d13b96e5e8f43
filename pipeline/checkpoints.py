"""Published models: weights as safetensors beside their config as JSON, never a pickle.

A model folder (`models/pose2gloss/`, `models/video2pose/`) holds `<name>.safetensors` (the state dict) and
`<name>.json` (what rebuilding the network and reading its inputs need: model config, data or frame options).
Loading either file runs no code from it, so a model someone hands you is safe to open. A `.pt` file (a pickle,
which can run any code when loaded) is refused before it is opened.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

WEIGHTS, CONFIG = ".safetensors", ".json"


class ModelFileError(ValueError):
    """A path that is not a published signx model (missing, a pickle, or unreadable)."""


def model_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """(weights, config) of a published model named by either file or by their common stem."""
    path = Path(path)
    if path.suffix in (WEIGHTS, CONFIG):
        path = path.with_suffix("")
    elif path.suffix:  # .pt, .pth, .ckpt, .bin, .pkl: pickles (or unknown), never opened
        raise ModelFileError(
            f"{path}: signx loads published models only from <name>{WEIGHTS} + <name>{CONFIG}, which cannot run "
            f"code; it never unpickles a {path.suffix} file (a pickle can run any code when loaded)"
        )
    return path.with_name(path.name + WEIGHTS), path.with_name(path.name + CONFIG)


def save_model(path: str | os.PathLike, state_dict: dict[str, torch.Tensor], config: dict) -> None:
    """Write `<path>.safetensors` and `<path>.json` atomically (temporary files, then renames)."""
    weights, cfg = model_paths(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    tmp_w, tmp_c = weights.with_name(f".{weights.name}.tmp"), cfg.with_name(f".{cfg.name}.tmp")
    save_file(tensors, str(tmp_w))
    tmp_c.write_text(json.dumps(config, indent=1, sort_keys=True, default=list) + "\n")
    os.replace(tmp_c, cfg)
    os.replace(tmp_w, weights)


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict, config) of a published model; ModelFileError when it is missing, a pickle or unreadable."""
    weights, cfg = model_paths(path)
    if not weights.exists() or not cfg.exists():
        missing = [str(p) for p in (weights, cfg) if not p.exists()]
        raise FileNotFoundError(f"no published model at {weights.with_suffix('')}: missing {missing}")
    try:
        config = json.loads(cfg.read_text())
        state = load_file(str(weights), device=str(device))
    except (SafetensorError, json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
        raise ModelFileError(f"{weights.with_suffix('')}: not a readable safetensors model ({err})") from err
    if not isinstance(config, dict):
        raise ModelFileError(f"{cfg}: expected a JSON object")
    return state, config


@contextmanager
def rebuilding(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Rebuilding a network from its published files: a config of another model or weights of other shapes (a
    Video2Pose handed over as Stage I, a file edited by hand) become one ModelFileError naming `what` it must be."""
    try:
        yield
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        if isinstance(err, ModelFileError):
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ModelFileError(f"{path}: not a {what} model ({type(err).__name__}: {first})") from None


def as_tuples(d: dict) -> dict:
    """JSON lists back to the tuples the config dataclasses hold."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


NOT_TRAINED = "NOT_TRAINED.json"  # published in place of a model that could not be trained, with the reason


def write_not_trained(out_dir: str | os.PathLike, reason: str) -> str:
    """Publish, instead of a model, the reason Stage II was not trained (`NOT_TRAINED`, read by `evaluate`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f"{NOT_TRAINED}.partial"
    tmp.write_text(json.dumps({"reason": reason}, indent=1) + "\n")
    os.replace(tmp, out / NOT_TRAINED)
    return reason


def not_trained_reason(model: str | os.PathLike) -> str | None:
    """Why the Stage II model `model` (`<out>/best`) was not trained, or None when it was."""
    path = Path(model).parent / NOT_TRAINED
    return json.loads(path.read_text())["reason"] if path.is_file() else None
