"""Where models run: CUDA (with bfloat16 mixed precision) when present and asked for, CPU otherwise."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel


def set_training_threads() -> int:
    """Every core for a training stage, unless OMP_NUM_THREADS says fewer (a machine shared with other jobs,
    where more threads than free cores make every step many times slower)."""
    n = int(os.environ.get("OMP_NUM_THREADS") or 0) or os.cpu_count() or 1
    torch.set_num_threads(n)
    return n


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` -> CUDA when available, else CPU; any other name (`cpu`, `cuda:1`) is taken as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast(device: torch.device) -> torch.autocast:
    """bfloat16 mixed precision on CUDA (no loss scaling needed); full precision on CPU."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def video_attention(device: torch.device) -> AbstractContextManager:
    """The attention kernel Video2Pose runs with: on CPU PyTorch's plain (math) scaled-dot-product attention, which
    for its short sequences (9 patch tokens per frame, Stage I's 5 tracks per frame) trains 4-9 % more frames per
    second than the flash kernel for CPU (bench/bench_video2pose.py, docs/VIDEO2POSE.md); PyTorch's own choice
    elsewhere."""
    return sdpa_kernel(SDPBackend.MATH) if device.type == "cpu" else nullcontext()
