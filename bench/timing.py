"""Timing helpers shared by the benchmarks: windows of repeated steps and peak memory, CUDA-aware."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable

import torch


def timed_windows(
    step: Callable[[int], int], steps: int, repeats: int, device: torch.device, warmup: int = 3
) -> list[tuple[int, float]]:
    """Call `step(i)` (which returns how many units it processed) `warmup` times, then `repeats` windows of
    `steps` calls; returns (units, seconds) per window, synchronising CUDA around each window."""
    for i in range(warmup):
        step(i)
    windows, i = [], warmup
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0, n = time.perf_counter(), 0
        for _ in range(steps):
            n += step(i)
            i += 1
        if device.type == "cuda":
            torch.cuda.synchronize()
        windows.append((n, time.perf_counter() - t0))
    return windows


def peak_memory(device: torch.device) -> dict:
    """Peak memory so far: `torch.cuda.max_memory_allocated` on CUDA, the process's max RSS on CPU."""
    if device.type == "cuda":
        return {"peak_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1),
                "memory_kind": "cuda max_memory_allocated"}  # fmt: skip
    return {"peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "memory_kind": "process max RSS"}  # fmt: skip
