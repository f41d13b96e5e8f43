"""Where models run: CUDA (with bfloat16 mixed precision) when present and asked for, CPU otherwise."""

from __future__ import annotations

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` -> CUDA when available, else CPU; any other name (`cpu`, `cuda:1`) is taken as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast(device: torch.device) -> torch.autocast:
    """bfloat16 mixed precision on CUDA (no loss scaling needed); full precision on CPU."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
