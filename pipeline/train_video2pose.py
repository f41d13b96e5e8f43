"""`train_video2pose` stage: Stage II training (Section 4.2, Table 2).

    python -m pipeline.train_video2pose [--params params.yaml]

Trains Video2Pose against the frozen Pose2Gloss (`models/pose2gloss/best.pt`): loss = masked reconstruction of
the five tracks in the fused store's normalised space (Eq. 13) + the text loss of the frozen Pose2Gloss reading the
predicted tracks (Table 2: weight 1). AdamW, 10 % warmup then cosine decay to 0.01 x lr, clipping 1.0. Video frames
are decoded once, by a pool of threads, into `data/frame_cache/` (`pipeline.video`). Writes `models/video2pose/`
(`best.pt` on validation WER through the frozen Stage I, and `last.pt`, from which a killed run resumes) and
DVCLive curves under `metrics/train_video2pose/`.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pipeline import scoring
from pipeline import training as training_module
from pipeline import video as video_module
from pipeline.data import bucket_batches
from pipeline.decoding import validation_decode
from pipeline.devices import autocast, resolve_device, video_attention
from pipeline.evaluate import predicted_track_mask
from pipeline.nets import video2pose as video2pose_net
from pipeline.nets.losses import ctc_loss, distillation_loss, reconstruction_loss, text_loss
from pipeline.nets.pose2gloss import Pose2Gloss, shift_right
from pipeline.nets.video2pose import Video2Pose, Video2PoseConfig
from pipeline.params import load_params, write_metrics
from pipeline.training import adamw, lr_lambda, publish, resume_point, run_fingerprint, save_atomic, split_params
from pipeline.video import (
    Clip,
    FrameCache,
    FrameDataset,
    FrameSpec,
    clip_frames,
    collate_clips,
    colour_jitter,
    geometric_jitter,
    load_clips,
)
from pipeline.vocab import PAD, Vocab

LOSSES = ("recon", "text", "ctc", "distill")


@dataclass
class TrainVideoConfig:
    """Optimisation settings (Table 2, Stage II column); the network's sizes are `Video2PoseConfig`."""

    epochs: int = 30  # Table 2: 300 at paper scale
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_frac: float = 0.1
    min_lr_ratio: float = 0.01
    clip: float = 1.0
    # 0 switches a loss off; ctc and distill are ours (docs/VIDEO2POSE.md)
    weights: dict = field(default_factory=lambda: {"recon": 1.0, "text": 1.0, "ctc": 1.0, "distill": 1.0})
    label_smoothing: float = 0.0  # Table 2: N/A for Stage II
    aug_colour: float = 0.3  # photometric jitter strength per training clip (pipeline.video.colour_jitter); 0 = off
    # framing jitter (pipeline.video.geometric_jitter): half the training clips shifted / scaled by up to this
    # fraction of the frame, trained through Stage I only (their pose targets no longer match); 0 = off
    aug_geometric: float = 0.05
    loader_workers: int = 0  # DataLoader processes reading the frame cache (decoding happens before training)
    decode_workers: int | None = None  # threads decoding videos into the cache; None: one per core
    checkpoint_every: int = 50  # optimizer steps between `last.pt` saves
    seed: int = 0
    device: str = "auto"


def _as_list(frames: list[np.ndarray]) -> list[np.ndarray]:  # module level: spawned loader workers pickle it
    return frames


def freeze(model: torch.nn.Module) -> torch.nn.Module:
    """Stage I stays exactly as trained: no gradients, eval mode (no dropout) for good."""
    model.requires_grad_(False)
    return model.eval()


def stage1_outputs(
    p2g: Pose2Gloss,
    poses: torch.Tensor,
    track_mask: torch.Tensor,
    targets: torch.Tensor,
    frame_pad: torch.Tensor,
    text: bool = True,
    ctc: bool = True,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Stage I reading tracks (B, T, 1959): its decoder's logits (B, L, V) teacher-forced on `targets` when `text`,
    its CTC head's frame logits (B, T, V) when `ctc` and the head was trained; None for what was not asked for."""
    f, z0 = p2g.encode(poses, track_mask)
    logits = p2g(shift_right(targets), z0, frame_pad) if text else None
    frame_logits = p2g.ctc_head(f) if ctc and p2g.ctc_trained else None
    return logits, frame_logits


def training_losses(v2p: Video2Pose, p2g: Pose2Gloss, batch: dict, cfg: TrainVideoConfig) -> dict[str, torch.Tensor]:
    pred = v2p(batch["frames"], batch["frame_pad"])  # (B, T, 1959)
    out = {}
    w = cfg.weights
    pad, targets = batch["frame_pad"], batch["targets"]
    if w.get("recon", 0):
        mask = batch["track_mask"]
        if "moved" in batch:  # geometric augmentation: those clips' targets no longer match their frames
            mask = mask & ~batch["moved"][:, None, None]
        out["recon"] = reconstruction_loss(pred, batch["poses"], mask, v2p.cfg.track_dims)
    if not (w.get("text", 0) or w.get("ctc", 0) or w.get("distill", 0)):
        return out
    logits, frame_logits = stage1_outputs(
        p2g, pred, predicted_track_mask(p2g, pad), targets, pad,
        text=bool(w.get("text", 0) or w.get("distill", 0)), ctc=bool(w.get("ctc", 0) or w.get("distill", 0)),
    )  # fmt: skip
    if w.get("text", 0):
        out["text"] = text_loss(logits, targets, cfg.label_smoothing)
    if w.get("ctc", 0):  # frame-aligned: every frame's predicted pose must score its gloss
        out["ctc"] = ctc_loss(frame_logits, pad, targets)
    if w.get("distill", 0):
        # Stage I's own outputs on the extracted tracks as soft targets: what it reads from a pose, gloss by gloss
        # and (CTC head) frame by frame, instead of reconstructing every dim of every track
        if "teacher_text" not in batch:
            batch = batch | teacher_logprobs(p2g, batch)
        out["distill"] = distillation_loss(logits, batch["teacher_text"], targets != PAD)
        if frame_logits is not None:
            out["distill"] = out["distill"] + distillation_loss(frame_logits, batch["teacher_ctc"], ~pad)
    return out


def augment(batch: dict, cfg: TrainVideoConfig, generator: torch.Generator) -> None:
    """The training-time augmentation of a batch, in place: colour jitter, then framing jitter, which also marks the
    clips it moved (`moved`, read by the reconstruction loss)."""
    pad = batch["frame_pad"]
    batch["frames"] = colour_jitter(batch["frames"], cfg.aug_colour, generator, pad)
    if cfg.aug_geometric:
        batch["frames"], batch["moved"] = geometric_jitter(batch["frames"], cfg.aug_geometric, generator, frame_pad=pad)


@torch.no_grad()
def teacher_logprobs(p2g: Pose2Gloss, batch: dict) -> dict[str, torch.Tensor]:
    """The distillation targets: the frozen Stage I reading the batch's extracted tracks. teacher_text (B, L, V),
    its decoder's log-probabilities teacher-forced on the targets, and teacher_ctc (B, T, V), its CTC head's (when
    it has one)."""
    pad = batch["frame_pad"]
    mask = batch["track_mask"] & predicted_track_mask(p2g, pad)
    logits, frame_logits = stage1_outputs(p2g, batch["poses"], mask, batch["targets"], pad)
    out = {"teacher_text": logits.float().log_softmax(-1)}
    if frame_logits is not None:
        out["teacher_ctc"] = frame_logits.float().log_softmax(-1)
    return out


def attach_teacher_outputs(p2g: Pose2Gloss, clips: list[Clip], device: torch.device) -> None:
    """Compute each clip's distillation targets once (Stage I is frozen and the tracks are fixed, so they never
    change), one clip at a time so that no padding touches them. Saves Stage I's forward pass on the extracted
    tracks at every step (about a tenth of a Stage II step on CPU)."""
    for c in tqdm(clips, desc="Stage I teacher outputs", unit="clip", mininterval=2.0):
        out = teacher_logprobs(p2g, {k: v.to(device) for k, v in collate_clips([c]).items()})  # no frames needed
        c.teacher_text = out["teacher_text"][0].cpu().numpy()
        c.teacher_ctc = out["teacher_ctc"][0].cpu().numpy() if "teacher_ctc" in out else None


@torch.no_grad()
def validate(
    v2p: Video2Pose, p2g: Pose2Gloss, clips: list[Clip], cache: FrameCache, vocab: Vocab, cfg: TrainVideoConfig
) -> dict:
    """Validation reconstruction loss and WER of Video2Gloss (Video2Pose then the frozen Stage I), in one pass of
    Video2Pose: decoded by the best path of Stage I's CTC head when it has one (no DDIM reverse process and no
    decoder loop: fast, and what the CTC loss trains), greedily by the decoder otherwise
    (`decoding.validation_decode`)."""
    v2p.eval()
    device = next(v2p.parameters()).device
    recon, n, refs, hyps = 0.0, 0, [], []
    for s in range(0, len(clips), 32):
        items = clips[s : s + 32]
        batch = {k: v.to(device) for k, v in collate_clips(items, clip_frames(items, cache)).items()}
        pad = batch["frame_pad"]
        with autocast(device), video_attention(device):
            pred = v2p(batch["frames"], pad).float()
        recon += reconstruction_loss(pred, batch["poses"], batch["track_mask"], v2p.cfg.track_dims).item()
        n += 1
        ids = validation_decode(p2g, pred, predicted_track_mask(p2g, pad), pad, best_path=True, seed=cfg.seed)
        hyps += [vocab.decode(row.tolist()) for row in ids]
        refs += [c.glosses for c in items]
    v2p.train()
    return {"wer": scoring.wer(refs, hyps)["wer"], "recon": recon / max(1, n)}


def train(
    model_cfg: Video2PoseConfig,
    cfg: TrainVideoConfig,
    pose2gloss: str | os.PathLike,
    features: str | os.PathLike,
    corpus: str | os.PathLike,
    out_dir: str | os.PathLike,
    frame_cache: str | os.PathLike,
    live_dir: str | os.PathLike | None = None,
    max_steps: int | None = None,
    work_dir: str | os.PathLike | None = None,
) -> dict:
    """Train (or resume) Stage II against the frozen Stage I checkpoint `pose2gloss`. `max_steps` stops early
    without finishing (to test kill-and-resume). Checkpoints go to `work_dir` and move to `out_dir` at the end,
    as in `train_pose2gloss.train`."""
    t0 = time.perf_counter()
    final_dir = Path(out_dir)
    out_dir = Path(work_dir) if work_dir is not None else final_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    torch.set_num_threads(os.cpu_count() or 1)
    vocab = Vocab.load(Path(corpus) / "vocab.json")
    p2g = freeze(Pose2Gloss.from_checkpoint(pose2gloss, device))
    if cfg.weights.get("ctc", 0) and not p2g.ctc_trained:
        raise ValueError(
            f"{pose2gloss} was trained without its CTC head (pose2gloss.losses.ctc=false), so the Stage II CTC loss "
            "has nothing to read: set video2pose.weights.ctc=0"
        )
    data_options = {"frame_stride": 1, "max_frames": 1024, **p2g.data_options}
    spec = FrameSpec(model_cfg.img_size, int(data_options["frame_stride"]), int(data_options["max_frames"]))
    cache = FrameCache(frame_cache, spec)
    load = dict(features=features, data_options=data_options, max_len=p2g.cfg.max_len,
                decode_workers=cfg.decode_workers)  # fmt: skip
    train_clips, skipped = load_clips(corpus, vocab, "train", cache, **load)
    val_clips, val_skipped = load_clips(corpus, vocab, "val", cache, **load)
    skipped |= val_skipped
    for utt, reason in skipped.items():
        print(f"train_video2pose: skipping {utt}: {reason}")
    if not train_clips:
        raise ValueError("no usable training clips")

    if cfg.weights.get("distill", 0):
        attach_teacher_outputs(p2g, train_clips, device)
    torch.manual_seed(cfg.seed)
    v2p = Video2Pose(model_cfg).to(device)
    params = [p for p in v2p.parameters() if p.requires_grad]
    opt = adamw(params, cfg.lr, cfg.weight_decay, cfg.betas)
    batches_per_epoch = math.ceil(len(train_clips) / cfg.batch_size)
    total = max(1, cfg.epochs * batches_per_epoch // cfg.grad_accum)
    warmup = max(1, int(cfg.warmup_frac * total))
    lr_sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_lambda(s, total, warmup, cfg.min_lr_ratio))
    state = {"epoch": 0, "batch": 0, "step": 0, "best_wer": float("inf"), "history": []}
    last = out_dir / "last.pt"
    code = [sys.modules[__name__], video2pose_net, video_module, training_module]
    fingerprint = run_fingerprint([model_cfg, cfg], code, features, corpus, files=(pose2gloss,))
    ck = resume_point(last, fingerprint, device, live_dir, "train_video2pose")
    if ck is not None:
        v2p.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        lr_sched.load_state_dict(ck["lr_scheduler"])
        torch.set_rng_state(ck["torch_rng"])
        state = ck["state"]
    frame_options = asdict(spec)

    def save(path: Path) -> None:
        save_atomic(
            {
                "model": v2p.state_dict(), "optimizer": opt.state_dict(), "lr_scheduler": lr_sched.state_dict(),
                "torch_rng": torch.get_rng_state(), "state": state, "model_config": asdict(model_cfg),
                "frame_options": frame_options, "train_config": asdict(cfg), "fingerprint": fingerprint,
            },
            path,
        )  # fmt: skip

    def save_weights(path: Path) -> None:
        torch.save({"model": v2p.state_dict(), "model_config": asdict(model_cfg), "frame_options": frame_options},
                   path)  # fmt: skip

    live = None
    if live_dir is not None:
        from dvclive import Live

        live = Live(str(live_dir), resume=ck is not None, save_dvc_exp=False, dvcyaml=None)
    dataset = FrameDataset(train_clips, cache)
    loader_kwargs = {}
    if cfg.loader_workers:
        spawn = multiprocessing.get_context("spawn")  # not fork: the parent runs torch threads
        loader_kwargs = {"num_workers": cfg.loader_workers, "multiprocessing_context": spawn}
    bar = tqdm(total=total, initial=state["step"], desc="train_video2pose", unit="step", mininterval=2.0)
    steps_this_run, frames_seen, t_train = 0, 0, time.perf_counter()
    v2p.train()
    while state["epoch"] < cfg.epochs:
        order = bucket_batches([c.n_frames for c in train_clips], cfg.batch_size,
                               np.random.default_rng([cfg.seed, state["epoch"]]))  # fmt: skip
        todo = order[state["batch"] :]
        # its own generator: a loader seeds itself from the global RNG otherwise, and a resumed run (which makes
        # its loader mid-epoch) would then draw different dropout masks than an uninterrupted one
        loader_rng = torch.Generator().manual_seed(cfg.seed)
        loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=todo, collate_fn=_as_list, generator=loader_rng, **loader_kwargs
        )
        sums: dict[str, float] = {}
        for idx, frames in zip(todo, loader):
            batch = {k: v.to(device) for k, v in collate_clips([train_clips[i] for i in idx], frames).items()}
            # seeded by position in training, so a resumed run draws what an uninterrupted one would
            aug = torch.Generator().manual_seed(hash((cfg.seed, state["epoch"], state["batch"])) & 0xFFFFFFFF)
            augment(batch, cfg, aug)
            frames_seen += int((~batch["frame_pad"]).sum())
            with autocast(device), video_attention(device):
                losses = training_losses(v2p, p2g, batch, cfg)
            loss = sum(cfg.weights[k] * v.float() for k, v in losses.items()) / cfg.grad_accum
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
                if state["step"] % cfg.checkpoint_every == 0:
                    save(last)
                if max_steps is not None and steps_this_run >= max_steps:
                    save(last)
                    bar.close()
                    return {"stopped_at_step": state["step"]}
        record = {f"train/{k}": v / max(1, len(todo)) for k, v in sums.items()}
        if val_clips:
            val = validate(v2p, p2g, val_clips, cache, vocab, cfg)
            record |= {"val/wer": val["wer"], "val/recon": val["recon"]}
            if val["wer"] < state["best_wer"]:
                state["best_wer"] = val["wer"]
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
    train_seconds = time.perf_counter() - t_train
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
        "skipped": skipped,
        "train_seconds": round(time.perf_counter() - t0, 1),
        "frames_per_second": round(frames_seen / max(train_seconds, 1e-9), 1),  # this run's training loop
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "device": str(device),
    }


def configs_from_params(section: dict, seed: int) -> tuple[Video2PoseConfig, TrainVideoConfig]:
    """Split the `video2pose` params section into the model and training configs; unknown keys are errors."""
    internal = {"track_dims", "extra", "seed"}
    m, t = split_params(dict(section), "video2pose", Video2PoseConfig, TrainVideoConfig, internal, LOSSES)
    return Video2PoseConfig(**m), TrainVideoConfig(**t, seed=seed)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--pose2gloss", default="models/pose2gloss/best.pt")
    ap.add_argument("--features", default="data/features.zarr")
    ap.add_argument("--corpus", default="data/corpus")
    ap.add_argument("--frame-cache", default="data/frame_cache")
    ap.add_argument("--out", default="models/video2pose")
    ap.add_argument("--work", default="models/.work/video2pose", help="checkpoints while training (resume point)")
    ap.add_argument("--metrics", default="metrics/video2pose_train.json")
    ap.add_argument("--live", default="metrics/train_video2pose")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    model_cfg, train_cfg = configs_from_params(params.get("video2pose", {}) or {}, int(params.get("seed", 0)))
    summary = train(model_cfg, train_cfg, args.pose2gloss, args.features, args.corpus, args.out, args.frame_cache,
                    args.live, work_dir=args.work)  # fmt: skip
    write_metrics(args.metrics, summary)
    print(f"train_video2pose: best val WER {summary['best_val_wer']:.2f} in {summary['train_seconds']} s")


if __name__ == "__main__":
    main()
