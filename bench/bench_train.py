"""Stage I training and decoding benchmarks (needs `make repro` first: it reads data/ and models/).

    python bench/bench_train.py [--steps 40] [--repeats 3] [--device auto]

(a) Pose2Gloss training throughput with the `pose2gloss` params of params.yaml: samples/s and optimizer
    steps/s over `--steps` steps (after 5 warm-up steps), median of `--repeats` windows, and peak memory
    (process max RSS on CPU; `torch.cuda.max_memory_allocated` on CUDA).
(b) Decoding with the trained `models/pose2gloss/best` on the `test` split: per-utterance latency of beam
    search (the params' decoding: beam 5, joint with CTC; one utterance at a time, median), and utterances/s
    when decoding batched (batch 32), for that beam search, the decoder-only beam search (ctc_weight 0) and
    greedy, same run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from timing import peak_memory, timed_windows  # noqa: E402  (bench/timing.py)

from pipeline.data import bucket_batches, collate, load_split  # noqa: E402
from pipeline.devices import autocast, resolve_device  # noqa: E402
from pipeline.nets.losses import LossWeighting  # noqa: E402
from pipeline.nets.pose2gloss import Pose2Gloss, make_schedulers  # noqa: E402
from pipeline.params import load_params  # noqa: E402
from pipeline.recognition import decode_config, pose2gloss_memory, recognize  # noqa: E402
from pipeline.train_pose2gloss import configs_from_params, training_losses  # noqa: E402
from pipeline.training import adamw  # noqa: E402
from pipeline.vocab import Vocab  # noqa: E402

FEATURES, CORPUS = ROOT / "data/features.zarr", ROOT / "data/corpus"


def bench_training(params: dict, steps: int, repeats: int, device: torch.device) -> dict:
    model_cfg, cfg = configs_from_params(params.get("pose2gloss", {}), int(params.get("seed", 0)))
    vocab = Vocab.load(CORPUS / "vocab.json")
    model_cfg.vocab_size = len(vocab)
    data = load_split(FEATURES, CORPUS, vocab, "train", cfg.tracks, cfg.frame_stride, cfg.max_frames, model_cfg.max_len)
    model = Pose2Gloss(model_cfg).to(device).train()
    weighting = LossWeighting(learnable=cfg.learnable_weights).to(device)
    opt = adamw([*model.parameters(), weighting.log_vars], cfg.lr, cfg.weight_decay, cfg.betas)  # as training
    sched, _ = make_schedulers(model_cfg)
    gen = torch.Generator().manual_seed(0)
    order = bucket_batches([len(u.features) for u in data], cfg.batch_size, np.random.default_rng(0))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def step(i: int) -> int:
        items = [data[j] for j in order[i % len(order)]]
        batch = {k: v.to(device) for k, v in collate(items).items()}
        with autocast(device):
            losses = training_losses(model, batch, cfg, 0.5, sched, gen)
        loss = weighting(losses, {**cfg.weights, "noise": 0.5})
        loss.backward()
        torch.nn.utils.clip_grad_norm_([*model.parameters(), weighting.log_vars], cfg.clip, foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return len(items)

    windows = timed_windows(step, steps, repeats, device, warmup=5)
    return {
        "samples_per_s": round(statistics.median(n / dt for n, dt in windows), 2),
        "steps_per_s": round(statistics.median(steps / dt for _, dt in windows), 3),
        "batch_size": cfg.batch_size,
        **peak_memory(device),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def bench_decoding(params: dict, repeats: int, device: torch.device) -> dict:
    model = Pose2Gloss.from_checkpoint(ROOT / "models/pose2gloss/best", device)
    vocab = Vocab.load(CORPUS / "vocab.json")
    data = load_split(FEATURES, CORPUS, vocab, "test", max_len=model.cfg.max_len, **model.data_options)
    beam = decode_config(params)
    greedy = dataclasses.replace(beam, strategy="greedy")
    decoder_only = dataclasses.replace(beam, ctc_weight=0.0)
    memory_fn = pose2gloss_memory(model)
    single = []
    for u in data[:20]:
        t0 = time.perf_counter()
        recognize(model, memory_fn, [u], vocab, beam, batch_size=1, desc="single")
        single.append(time.perf_counter() - t0)
    batched = {"beam": [], "beam_decoder_only": [], "greedy": []}
    for _ in range(repeats):
        for name, dcfg in (("beam", beam), ("beam_decoder_only", decoder_only), ("greedy", greedy)):
            t0 = time.perf_counter()
            recognize(model, memory_fn, data, vocab, dcfg, batch_size=32, desc=name)
            batched[name].append(len(data) / (time.perf_counter() - t0))
    return {
        "beam_size": beam.beam_size,
        "ctc_weight": beam.ctc_weight,
        "beam_latency_ms_per_utterance_median": round(1000 * statistics.median(single), 1),
        "beam_utterances_per_s_batched": round(statistics.median(batched["beam"]), 2),
        "beam_decoder_only_utterances_per_s_batched": round(statistics.median(batched["beam_decoder_only"]), 2),
        "greedy_utterances_per_s_batched": round(statistics.median(batched["greedy"]), 2),
        "utterances": len(data),
        "note": "includes the DDIM reverse process and the teacher-forced Top-k pass of `recognize`",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = resolve_device(args.device)
    torch.set_num_threads(torch.get_num_threads())
    params = load_params(ROOT / "params.yaml")
    result = {"device": str(device), "torch_threads": torch.get_num_threads(),
              "training": bench_training(params, args.steps, args.repeats, device)}  # fmt: skip
    if (ROOT / "models/pose2gloss/best.safetensors").exists():
        result["decoding"] = bench_decoding(params, args.repeats, device)
    out = ROOT / "bench/results/train.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
