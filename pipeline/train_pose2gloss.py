"""`train_pose2gloss` stage: Stage I training (Section 4.1, Table 2).

    python -m pipeline.train_pose2gloss [--params params.yaml]

AdamW, linear warmup then cosine decay to `min_lr_ratio` x lr, gradient accumulation and clipping, the Table 2
loss weights with the noise-weight and teacher-forcing schedules, and the learnable weighting of Eq. 12. Writes
`models/pose2gloss/` (checkpoints at 25 / 50 / 75 / 100 % of training for Fig. 3, `best.pt` on validation WER,
and `last.pt`, from which a killed run resumes) and DVCLive curves under `metrics/train_pose2gloss/`.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import jiwer
import numpy as np
import torch
from tqdm import tqdm

from pipeline import data as data_module
from pipeline import training as training_module
from pipeline.data import Utterance, augment, bucket_batches, collate, load_split
from pipeline.decoding import validation_decode
from pipeline.devices import autocast, resolve_device
from pipeline.nets import losses as losses_module
from pipeline.nets import pose2gloss as pose2gloss_net
from pipeline.nets.losses import (
    LOSS_NAMES,
    LossWeighting,
    contrastive_loss,
    ctc_loss,
    ngram_f1_loss,
    noise_loss,
    text_embedding,
    text_loss,
    word_matching_loss,
)
from pipeline.nets.pose2gloss import Pose2Gloss, Pose2GlossConfig, make_schedulers, shift_right, snr
from pipeline.params import load_params, write_metrics
from pipeline.training import adamw, lr_lambda, publish, resume_point, run_fingerprint, save_atomic, split_params
from pipeline.vocab import PAD, Vocab


@dataclass
class TrainConfig:
    """Optimisation and loss settings (Table 2 names); the model's sizes and switches are `Pose2GlossConfig`."""

    epochs: int = 40
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_frac: float = 0.05  # Table 2: dynamic, 2-10 % of the steps
    min_lr_ratio: float = 0.05
    clip: float = 7.0
    label_smoothing: float = 0.1
    teacher_forcing: tuple[float, float] = (0.5, 0.0)  # ratio of gold decoder inputs, start -> end
    noise_weight: tuple[float, float] = (1.0, 0.0)  # weight of L_noise, start -> end
    weights: dict = field(
        default_factory=lambda: {"text": 1.0, "word": 1.0, "ngram": 0.6, "contrast": 1.0, "ctc": 1.0}
    )  # Table 2, plus the auxiliary CTC loss (ours)
    losses: dict = field(default_factory=lambda: {k: True for k in LOSS_NAMES})
    learnable_weights: bool = True
    contrast_tau: float = 0.07
    aug_speed: tuple[float, float] = (1.0, 1.0)  # data.augment: signing-rate range
    aug_noise: float = 0.0  # data.augment: Gaussian feature noise (normalised units)
    aug_track_dropout: float = 0.0  # data.augment: per-track drop probability per utterance
    tracks: tuple[str, ...] | None = None  # None: all five; else only these (single-track ablations)
    frame_stride: int = 2
    max_frames: int = 256
    checkpoint_every: int = 50  # optimizer steps between `last.pt` saves
    seed: int = 0
    device: str = "auto"


def _linear(schedule: tuple[float, float], progress: float) -> float:
    return schedule[0] + (schedule[1] - schedule[0]) * progress


def evaluate_wer(model: Pose2Gloss, data: list[Utterance], vocab: Vocab, device: torch.device, bs: int = 32) -> dict:
    hyps, refs = [], []
    model.eval()  # the training loop sets train mode again at the next epoch
    for s in range(0, len(data), bs):
        items = data[s : s + bs]
        batch = {k: v.to(device) for k, v in collate(items).items()}
        with autocast(device):
            ids = validation_decode(model, batch["features"], batch["track_mask"], batch["frame_pad"])
        hyps += [vocab.decode(row.tolist()) for row in ids]
        refs += [u.glosses for u in items]
    out = jiwer.process_words(refs, hyps)
    return {"wer": 100 * out.wer, "hypotheses": hyps}


def training_losses(
    model: Pose2Gloss,
    batch: dict,
    cfg: TrainConfig,
    progress: float,
    sched,
    gen: torch.Generator,
) -> dict[str, torch.Tensor]:
    """Every enabled Stage I loss for one batch."""
    f, z0 = model.encode(batch["features"], batch["track_mask"])
    targets, pad = batch["targets"], batch["frame_pad"]
    out: dict[str, torch.Tensor] = {}
    if model.cfg.diffusion and cfg.losses.get("noise", True):
        t = torch.randint(0, sched.config.num_train_timesteps, (len(z0),), generator=gen).to(z0.device)
        eps = torch.randn(z0.shape, generator=gen).to(z0.device)
        eps_hat = model.predict_noise(sched.add_noise(z0, eps, t), t, f, sched)
        out["noise"] = noise_loss(eps_hat, eps, pad, snr(sched, t))
    inputs = shift_right(targets)
    ratio = _linear(cfg.teacher_forcing, progress)
    if ratio < 1.0:  # scheduled sampling: some decoder inputs are the model's own predictions
        with torch.no_grad():
            pred = model(inputs, z0, pad).argmax(-1)
        use_pred = torch.rand(inputs.shape, generator=gen).to(inputs.device) >= ratio
        use_pred[:, 0] = False
        mixed = inputs.clone()
        mixed[:, 1:] = torch.where(use_pred[:, 1:], pred[:, :-1], inputs[:, 1:])
        inputs = torch.where(inputs == PAD, inputs, mixed)
    logits = model(inputs, z0, pad)
    codebook = model.decoder.codebook.weight
    if cfg.losses.get("text", True):
        out["text"] = text_loss(logits, targets, cfg.label_smoothing)
    if cfg.losses.get("word", True):
        out["word"] = word_matching_loss(logits, targets, codebook)
    if cfg.losses.get("ngram", True):
        out["ngram"] = ngram_f1_loss(logits, targets)
    if cfg.losses.get("ctc", True):
        out["ctc"] = ctc_loss(model.ctc_head(f), pad, targets)
    if cfg.losses.get("contrast", True):
        out["contrast"] = contrastive_loss(
            model.pose_embedding(f, pad), text_embedding(targets, codebook), cfg.contrast_tau
        )
    return out


def train(
    model_cfg: Pose2GlossConfig,
    cfg: TrainConfig,
    features: str | os.PathLike,
    corpus: str | os.PathLike,
    out_dir: str | os.PathLike,
    live_dir: str | os.PathLike | None = None,
    max_steps: int | None = None,
    work_dir: str | os.PathLike | None = None,
) -> dict:
    """Train (or resume) Stage I. `max_steps` stops early without finishing (used to test kill-and-resume).

    Checkpoints are written to `work_dir` (default: `out_dir`) and moved to `out_dir` when training finishes.
    The stage uses a work folder outside its DVC output, which DVC deletes before rerunning a stage: a killed run
    resumes from `work_dir/last.pt`, and the output stays an ordinary cached output (run-cache included)."""
    t0 = time.perf_counter()
    final_dir = Path(out_dir)
    out_dir = Path(work_dir) if work_dir is not None else final_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    torch.set_num_threads(os.cpu_count() or 1)
    vocab = Vocab.load(Path(corpus) / "vocab.json")
    model_cfg.vocab_size = len(vocab)
    # how the model reads the store; saved in every checkpoint so that evaluation reads it the same way
    data_options = dict(tracks=cfg.tracks, frame_stride=cfg.frame_stride, max_frames=cfg.max_frames)
    train_data = load_split(features, corpus, vocab, "train", **data_options, max_len=model_cfg.max_len)
    val_data = load_split(features, corpus, vocab, "val", **data_options, max_len=model_cfg.max_len)
    if not train_data:
        raise ValueError("the train split is empty")

    torch.manual_seed(cfg.seed)
    model = Pose2Gloss(model_cfg).to(device)
    model.ctc_trained = bool(cfg.losses.get("ctc", True))  # decoding may use the CTC head only if it was trained
    weighting = LossWeighting(learnable=cfg.learnable_weights).to(device)
    params = list(model.parameters()) + ([weighting.log_vars] if cfg.learnable_weights else [])
    opt = adamw(params, cfg.lr, cfg.weight_decay, cfg.betas)
    batches_per_epoch = math.ceil(len(train_data) / cfg.batch_size)
    total = max(1, cfg.epochs * batches_per_epoch // cfg.grad_accum)
    warmup = max(1, int(cfg.warmup_frac * total))
    lr_sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_lambda(s, total, warmup, cfg.min_lr_ratio))
    sched, _ = make_schedulers(model_cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    state = {"epoch": 0, "batch": 0, "step": 0, "best_wer": float("inf"), "history": []}
    last = out_dir / "last.pt"
    code = [sys.modules[__name__], pose2gloss_net, losses_module, data_module, training_module]
    fingerprint = run_fingerprint([model_cfg, cfg], code, features, corpus)
    ck = resume_point(last, fingerprint, device, live_dir, "train_pose2gloss")
    if ck is not None:
        model.load_state_dict(ck["model"])
        weighting.load_state_dict(ck["weighting"])
        opt.load_state_dict(ck["optimizer"])
        lr_sched.load_state_dict(ck["lr_scheduler"])
        gen.set_state(ck["generator"])
        torch.set_rng_state(ck["torch_rng"])
        state = ck["state"]
    quarters = {round(total * q / 4): f"q{25 * q}.pt" for q in (1, 2, 3, 4)}

    def save(path: Path) -> None:
        save_atomic(
            {
                "model": model.state_dict(),
                "weighting": weighting.state_dict(),
                "optimizer": opt.state_dict(),
                "lr_scheduler": lr_sched.state_dict(),
                "generator": gen.get_state(),
                "torch_rng": torch.get_rng_state(),
                "state": state,
                "model_config": asdict(model_cfg),
                "data_options": data_options,
                "ctc_trained": model.ctc_trained,
                "train_config": asdict(cfg),
                "fingerprint": fingerprint,
            },  # fmt: skip
            path,
        )

    def save_weights(path: Path) -> None:  # what inference needs, without the optimizer state
        torch.save({"model": model.state_dict(), "model_config": asdict(model_cfg), "data_options": data_options,
                    "ctc_trained": model.ctc_trained}, path)  # fmt: skip

    live = None
    if live_dir is not None:
        from dvclive import Live

        live = Live(str(live_dir), resume=ck is not None, save_dvc_exp=False, dvcyaml=None)
    bar = tqdm(total=total, initial=state["step"], desc="train_pose2gloss", unit="step", mininterval=2.0)
    steps_this_run = 0
    while state["epoch"] < cfg.epochs:
        order = bucket_batches([len(u.features) for u in train_data], cfg.batch_size,
                               np.random.default_rng([cfg.seed, state["epoch"]]))  # fmt: skip
        sums: dict[str, float] = {}
        model.train()
        while state["batch"] < len(order):
            idx = order[state["batch"]]
            aug_rng = np.random.default_rng([cfg.seed, state["epoch"], state["batch"]])  # resumable
            items = [augment(train_data[i], aug_rng, cfg.aug_speed, cfg.aug_noise, cfg.aug_track_dropout) for i in idx]
            batch = {k: v.to(device) for k, v in collate(items).items()}
            progress = state["step"] / total
            with autocast(device):
                losses = training_losses(model, batch, cfg, progress, sched, gen)
            weights = {**cfg.weights, "noise": _linear(cfg.noise_weight, progress)}
            loss = weighting(losses, weights) / cfg.grad_accum
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at step {state['step']}")
            loss.backward()
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v.item()
            state["batch"] += 1
            if state["batch"] % cfg.grad_accum == 0 or state["batch"] == len(order):
                torch.nn.utils.clip_grad_norm_(params, cfg.clip, foreach=True)
                opt.step()
                opt.zero_grad(set_to_none=True)
                lr_sched.step()
                state["step"] += 1
                steps_this_run += 1
                bar.update()
                if state["step"] in quarters:
                    save(out_dir / quarters[state["step"]])
                if state["step"] % cfg.checkpoint_every == 0:
                    save(last)
                if max_steps is not None and steps_this_run >= max_steps:
                    save(last)
                    bar.close()
                    return {"stopped_at_step": state["step"]}
        n = len(order)
        record = {f"train/{k}": v / n for k, v in sums.items()}
        if val_data:
            record["val/wer"] = evaluate_wer(model, val_data, vocab, device)["wer"]
            if record["val/wer"] < state["best_wer"]:
                state["best_wer"] = record["val/wer"]
                save_weights(out_dir / "best.pt")
        record["lr"] = lr_sched.get_last_lr()[0]
        state["history"].append(record)
        if live is not None:
            for k, v in record.items():
                live.log_metric(k, v)
            live.next_step()
        state["epoch"] += 1
        state["batch"] = 0
        save(last)
    bar.close()
    if not (out_dir / "best.pt").exists():
        save_weights(out_dir / "best.pt")
    if live is not None:
        live.end()
    publish(out_dir, final_dir)
    return {
        "epochs": cfg.epochs,
        "steps": state["step"],
        "best_val_wer": state["best_wer"],
        "final": state["history"][-1] if state["history"] else {},
        "train_seconds": round(time.perf_counter() - t0, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "device": str(device),
    }


def configs_from_params(section: dict, seed: int) -> tuple[Pose2GlossConfig, TrainConfig]:
    """Split the `pose2gloss` params section into the model and training configs; unknown keys are errors."""
    internal = {"vocab_size", "track_dims", "extra", "seed"}
    m, t = split_params(dict(section), "pose2gloss", Pose2GlossConfig, TrainConfig, internal, LOSS_NAMES)
    return Pose2GlossConfig(**m), TrainConfig(**t, seed=seed)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--features", default="data/features.zarr")
    ap.add_argument("--corpus", default="data/corpus")
    ap.add_argument("--out", default="models/pose2gloss")
    ap.add_argument("--work", default="models/.work/pose2gloss", help="checkpoints while training (resume point)")
    ap.add_argument("--metrics", default="metrics/pose2gloss_train.json")
    ap.add_argument("--live", default="metrics/train_pose2gloss")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    model_cfg, train_cfg = configs_from_params(params.get("pose2gloss", {}) or {}, int(params.get("seed", 0)))
    summary = train(model_cfg, train_cfg, args.features, args.corpus, args.out, args.live, work_dir=args.work)
    write_metrics(args.metrics, summary)
    print(f"train_pose2gloss: best val WER {summary['best_val_wer']:.2f} in {summary['train_seconds']} s")


if __name__ == "__main__":
    main()
