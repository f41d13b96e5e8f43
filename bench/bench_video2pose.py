"""Stage II benchmarks: which one bounds Video2Pose training, the network or the video data loader?

    python bench/bench_video2pose.py [--steps 30] [--repeats 3] [--device auto]

Needs `make repro` first (reads data/corpus, data/features.zarr and models/pose2gloss/best). All in one run:

(a) training: frames/s of Video2Pose training steps (the colour / framing augmentation, forward, the
    `video2pose.weights` losses through the frozen Stage I, backward, AdamW) with the `video2pose` params,
    batches from a warm frame cache, median of `--repeats` windows of `--steps` steps, and peak memory; on CPU
    then the same steps with PyTorch's flash attention kernel instead of the math one training uses;
(b) decoding the train videos into frames (OpenCV decode + resize, what a cold cache costs), frames/s with one
    process and with `FrameCache.fill`'s pool of one worker process per core (its start-up included);
(c) the data loader alone reading the warm frame cache (what every epoch after the first costs), frames/s with
    `loader_workers` 0 and 2.

The ratio (c) / (a) says how far the loader is from being the bottleneck.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import partial
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from timing import peak_memory, timed_windows  # noqa: E402  (bench/timing.py)

from pipeline.data import bucket_batches  # noqa: E402
from pipeline.devices import autocast, resolve_device, video_attention  # noqa: E402
from pipeline.nets.pose2gloss import Pose2Gloss  # noqa: E402
from pipeline.nets.video2pose import Video2Pose  # noqa: E402
from pipeline.params import load_params  # noqa: E402
from pipeline.train_video2pose import (  # noqa: E402
    _as_list,
    attach_teacher_outputs,
    augment,
    configs_from_params,
    training_losses,
)
from pipeline.training import active_losses, adamw  # noqa: E402
from pipeline.video import (  # noqa: E402
    FrameCache,
    FrameDataset,
    FrameSpec,
    clip_frames,
    collate_clips,
    load_clips,
    read_video,
)  # fmt: skip
from pipeline.video2gloss import freeze  # noqa: E402
from pipeline.vocab import Vocab  # noqa: E402

CORPUS, FEATURES = ROOT / "data/corpus", ROOT / "data/features.zarr"


def bench_training(params: dict, steps: int, repeats: int, device: torch.device, cache_dir: Path) -> dict:
    model_cfg, cfg = configs_from_params(params.get("video2pose", {}), int(params.get("seed", 0)))
    p2g = freeze(Pose2Gloss.from_checkpoint(ROOT / "models/pose2gloss/best", device))
    opts = {"frame_stride": 1, "max_frames": 1024, **p2g.data_options}
    cache = FrameCache(cache_dir, FrameSpec(model_cfg.img_size, opts["frame_stride"], opts["max_frames"]))
    vocab = Vocab.load(CORPUS / "vocab.json")
    clips, _ = load_clips(CORPUS, vocab, "train", cache, FEATURES, opts, p2g.cfg.max_len, cfg.decode_workers)
    if "distill" in active_losses(cfg.losses, cfg.weights):  # as training: the teacher outputs once, not every step
        attach_teacher_outputs(p2g, clips, device)
    order = bucket_batches([c.n_frames for c in clips], cfg.batch_size, np.random.default_rng(0))
    torch.manual_seed(0)
    v2p = Video2Pose(model_cfg).to(device).train()
    opt = adamw(list(v2p.parameters()), cfg.lr, cfg.weight_decay, cfg.betas)  # as training
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    aug = torch.Generator().manual_seed(0)

    def step(i: int, attention: Callable[[], AbstractContextManager] = lambda: video_attention(device)) -> int:
        """One training step; `attention` the kernel context, by default what training uses (math on CPU)."""
        items = [clips[j] for j in order[i % len(order)]]
        batch = {k: v.to(device) for k, v in collate_clips(items, clip_frames(items, cache)).items()}
        augment(batch, cfg, aug)  # as training does
        with autocast(device), attention():
            losses = training_losses(v2p, p2g, batch, cfg)
        sum(cfg.weights[k] * v.float() for k, v in losses.items()).backward()
        torch.nn.utils.clip_grad_norm_(v2p.parameters(), cfg.clip, foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return int((~batch["frame_pad"]).sum())

    windows = timed_windows(step, steps, repeats, device, warmup=3)
    memory = peak_memory(device)
    extra = {}
    if device.type == "cpu":  # the same steps with PyTorch's own kernel choice (flash on CPU), side by side
        flash = timed_windows(partial(step, attention=contextlib.nullcontext), steps, repeats, device, warmup=3)
        extra["frames_per_s_flash_attention"] = round(statistics.median(n / dt for n, dt in flash), 1)
    return (
        {
            "frames_per_s": round(statistics.median(n / dt for n, dt in windows), 1),
            **extra,
            "batch_size": cfg.batch_size,
            "img_size": model_cfg.img_size,
            "stem": model_cfg.stem,
            "vit_depth": model_cfg.vit_depth,
            **memory,
            "parameters": sum(p.numel() for p in v2p.parameters()),
        },
        clips,
        cache,
    )


def bench_decoding(clips: list, spec: FrameSpec, repeats: int) -> dict:
    videos = [c.video for c in clips]  # the whole train split, as training decodes it
    frames = sum(len(read_video(v, spec)) for v in videos[:4])  # warm the OS file cache and the codec
    one, pool = [], []
    workers = os.cpu_count() or 1
    for _ in range(repeats):
        t0, frames = time.perf_counter(), 0
        for v in videos:
            frames += len(read_video(v, spec))
        one.append(frames / (time.perf_counter() - t0))
        with tempfile.TemporaryDirectory() as tmp:
            cache = FrameCache(tmp, spec)
            t0 = time.perf_counter()
            cache.fill(videos, workers, desc="bench decode")  # the pool of threads training uses
            pool.append(frames / (time.perf_counter() - t0))
    return {"one_process_frames_per_s": round(statistics.median(one), 1),
            f"{workers}_threads_frames_per_s": round(statistics.median(pool), 1),
            "videos": len(videos)}  # fmt: skip


def bench_loader(clips: list, cache: FrameCache, batch_size: int, repeats: int) -> dict:
    out = {}
    dataset = FrameDataset(clips, cache)
    order = bucket_batches([c.n_frames for c in clips], batch_size, np.random.default_rng(0))
    for workers in (0, 2):
        kwargs = {"num_workers": workers, "persistent_workers": True,
                  "multiprocessing_context": multiprocessing.get_context("spawn")} if workers else {}  # fmt: skip
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=order, collate_fn=_as_list, **kwargs)
        for _ in loader:  # warm-up pass: starts the workers
            pass
        rates = []
        for _ in range(repeats):
            t0, n = time.perf_counter(), 0
            for frames in loader:
                n += sum(len(f) for f in frames)
            rates.append(n / (time.perf_counter() - t0))
        out[f"workers_{workers}_frames_per_s"] = round(statistics.median(rates), 1)
    out["note"] = "passes over the train split from the warm cache, after a warm-up pass that starts the workers"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = resolve_device(args.device)
    params = load_params(ROOT / "params.yaml")
    cache_dir = Path(tempfile.mkdtemp(prefix="bench-frames-"))
    try:
        training, clips, cache = bench_training(params, args.steps, args.repeats, device, cache_dir)
        loader = bench_loader(clips, cache, training["batch_size"], args.repeats)
        decoding = bench_decoding(clips, cache.spec, args.repeats)
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    result = {
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "training": training,
        "loader_warm_cache": loader,
        "decoding_cold": decoding,
        "loader_over_training": round(loader["workers_0_frames_per_s"] / training["frames_per_s"], 1),
    }
    out = ROOT / "bench/results/video2pose.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
