"""`train_video2pose` stage: Stage II training (Section 4.2, Table 2).

    python -m pipeline.train_video2pose [--params params.yaml]

Trains Video2Pose against the frozen Pose2Gloss (`models/pose2gloss/best`): loss = masked reconstruction of
the five tracks in the fused store's normalised space (Eq. 13) + the text loss of the frozen Pose2Gloss reading the
predicted tracks (Table 2: weight 1). AdamW, 10 % warmup then cosine decay to 0.01 x lr, clipping 1.0. Video frames
are decoded once, by a pool of threads, into `data/frame_cache/` (`pipeline.video`). Publishes to
`models/video2pose/` the weights with the best validation WER through the frozen Stage I (`best.safetensors` +
`best.json`); `models/.work/video2pose/last.pt` is the resume point of a killed run. DVCLive curves go to
`metrics/train_video2pose/`.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pipeline import scoring
from pipeline import training as training_module
from pipeline import video as video_module
from pipeline.checkpoints import ModelFileError, model_paths, write_not_trained
from pipeline.corpus.manifest import has_videos
from pipeline.data import bucket_batches
from pipeline.decoding import validation_decode
from pipeline.devices import autocast, resolve_device, set_training_threads, video_attention
from pipeline.hashing import sha256_files
from pipeline.nets import video2pose as video2pose_net
from pipeline.nets.losses import ctc_loss, distillation_loss, reconstruction_loss, text_loss
from pipeline.nets.pose2gloss import Pose2Gloss
from pipeline.nets.video2pose import Video2Pose, Video2PoseConfig
from pipeline.params import load_params, run_cli, write_metrics
from pipeline.training import TrainingRun, active_losses, optimiser, run_fingerprint, stage_parser
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
from pipeline.video2gloss import freeze, predicted_track_mask, stage1_outputs
from pipeline.video2pose_config import TrainVideoConfig, configs_from_params
from pipeline.vocab import PAD, Vocab


def _as_list(frames: list[np.ndarray]) -> list[np.ndarray]:  # module level: spawned loader workers pickle it
    return frames


def training_losses(v2p: Video2Pose, p2g: Pose2Gloss, batch: dict, cfg: TrainVideoConfig) -> dict[str, torch.Tensor]:
    """Every active Stage II loss for one batch (`training.active_losses`)."""
    pred = v2p(batch["frames"], batch["frame_pad"])  # (B, T, 1959)
    out = {}
    on = active_losses(cfg.losses, cfg.weights)
    pad, targets = batch["frame_pad"], batch["targets"]
    if "recon" in on:
        mask = batch["track_mask"]
        if "moved" in batch:  # geometric augmentation: those clips' targets no longer match their frames
            mask = mask & ~batch["moved"][:, None, None]
        out["recon"] = reconstruction_loss(pred, batch["features"], mask, v2p.cfg.track_dims)
    if not on & {"text", "ctc", "distill"}:
        return out
    logits, frame_logits = stage1_outputs(
        p2g, pred, predicted_track_mask(p2g, pad), targets, pad,
        text=bool(on & {"text", "distill"}), ctc=bool(on & {"ctc", "distill"}),
    )  # fmt: skip
    if "text" in on:
        out["text"] = text_loss(logits, targets, cfg.label_smoothing)
    if "ctc" in on:  # frame-aligned: every frame's predicted pose must score its gloss
        out["ctc"] = ctc_loss(frame_logits, pad, targets)
    if "distill" in on:
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
    logits, frame_logits = stage1_outputs(p2g, batch["features"], mask, batch["targets"], pad)
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
        recon += reconstruction_loss(pred, batch["features"], batch["track_mask"], v2p.cfg.track_dims).item()
        n += 1
        ids = validation_decode(p2g, pred, predicted_track_mask(p2g, pad), pad, best_path=True, seed=cfg.seed)
        hyps += [vocab.decode(row.tolist()) for row in ids]
        refs += [c.glosses for c in items]
    v2p.train()
    return {"wer": scoring.wer(refs, hyps)["wer"], "recon": recon / max(1, n)}


def train(
    model_cfg: Video2PoseConfig, cfg: TrainVideoConfig, pose2gloss: str | os.PathLike, features: str | os.PathLike,
    corpus: str | os.PathLike, out_dir: str | os.PathLike, frame_cache: str | os.PathLike,
    live_dir: str | os.PathLike | None = None, max_steps: int | None = None, work_dir: str | os.PathLike | None = None,
) -> dict:  # fmt: skip
    """Train (or resume) Stage II against the frozen, published Stage I model `pose2gloss`; publish `best` to
    `out_dir`. `max_steps` stops early without finishing (the resume tests); the run lives in `work_dir`
    (`training.TrainingRun`), as in `train_pose2gloss.train`."""
    device = resolve_device(cfg.device)
    set_training_threads()
    vocab = Vocab.load(Path(corpus) / "vocab.json")
    p2g = freeze(Pose2Gloss.from_checkpoint(pose2gloss, device))
    if "ctc" in active_losses(cfg.losses, cfg.weights) and not p2g.ctc_trained:
        raise ValueError(
            f"{pose2gloss} was trained without its CTC head (pose2gloss.losses.ctc=false), so the Stage II CTC loss "
            "has nothing to read: set video2pose.losses.ctc=false"
        )
    model_cfg.track_dims = p2g.cfg.track_dims
    train_clips, val_clips, cache, skipped = _clips(model_cfg, cfg, p2g, features, corpus, frame_cache)
    if "distill" in active_losses(cfg.losses, cfg.weights):
        attach_teacher_outputs(p2g, train_clips, device)
    torch.manual_seed(cfg.seed)
    v2p = Video2Pose(model_cfg).to(device)
    v2p.frame_options = asdict(cache.spec)
    v2p.teacher_sha256 = sha256_files([model_paths(pose2gloss)[0]])  # the Stage I it must run with
    params = [p for p in v2p.parameters() if p.requires_grad]
    opt, lr_sched, total = optimiser(params, cfg, len(train_clips))
    code = [sys.modules[__name__], sys.modules[TrainVideoConfig.__module__], video2pose_net, video_module,
            training_module]  # fmt: skip
    fingerprint = run_fingerprint([model_cfg, cfg], code, features, corpus, files=model_paths(pose2gloss))
    run = TrainingRun(
        "train_video2pose", work_dir or out_dir, out_dir, fingerprint, total, cfg.seed, live_dir, max_steps,
        checkpoint_every=cfg.checkpoint_every, model=v2p, optimizer=opt, lr_scheduler=lr_sched,
    )  # fmt: skip
    dataset = FrameDataset(train_clips, cache)
    frames_seen, t_train = 0, time.perf_counter()
    v2p.train()
    while run.epoch < cfg.epochs:
        order = bucket_batches([c.n_frames for c in train_clips], cfg.batch_size,
                               np.random.default_rng([cfg.seed, run.epoch]))  # fmt: skip
        todo = run.remaining(order)
        for idx, frames in zip(todo, _loader(dataset, todo, cfg)):
            batch = {k: v.to(device) for k, v in collate_clips([train_clips[i] for i in idx], frames).items()}
            augment(batch, cfg, run.step_generator())
            frames_seen += int((~batch["frame_pad"]).sum())
            with autocast(device), video_attention(device):
                losses = training_losses(v2p, p2g, batch, cfg)
            loss = sum(cfg.weights[k] * v.float() for k, v in losses.items()) / cfg.grad_accum
            if run.backward(loss, losses, len(order), cfg.grad_accum) and run.step(params, cfg.clip):
                return run.stopped()
        validation = validate(v2p, p2g, val_clips, cache, vocab, cfg) if val_clips else {}
        run.end_epoch({f"val/{k}": v for k, v in validation.items()})
    fps = round(frames_seen / max(time.perf_counter() - t_train, 1e-9), 1)  # this run's training loop
    return run.finish(device) | {"skipped": skipped, "frames_per_second": fps}


def _clips(
    model_cfg: Video2PoseConfig, cfg: TrainVideoConfig, p2g: Pose2Gloss, features: str | os.PathLike,
    corpus: str | os.PathLike, frame_cache: str | os.PathLike,
) -> tuple[list[Clip], list[Clip], FrameCache, dict[str, str]]:  # fmt: skip
    """Train and val clips with their frames cached, sampled as Stage I samples its features, and the skips."""
    vocab = Vocab.load(Path(corpus) / "vocab.json")
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
    return train_clips, val_clips, cache, skipped


def _loader(dataset: FrameDataset, todo: list[list[int]], cfg: TrainVideoConfig) -> torch.utils.data.DataLoader:
    """The frames of this epoch's remaining batches, read from the cache (in worker processes when asked)."""
    kwargs = {}
    if cfg.loader_workers:
        spawn = multiprocessing.get_context("spawn")  # not fork: the parent runs torch threads
        kwargs = {"num_workers": cfg.loader_workers, "multiprocessing_context": spawn}
    # its own generator: a loader seeds itself from the global RNG otherwise, and a resumed run (which makes its
    # loader mid-epoch) would then draw different dropout masks than an uninterrupted one
    rng = torch.Generator().manual_seed(cfg.seed)
    return torch.utils.data.DataLoader(dataset, batch_sampler=todo, collate_fn=_as_list, generator=rng, **kwargs)


def main(argv: list[str] | None = None) -> None:
    ap = stage_parser(__doc__, "video2pose")
    ap.add_argument("--pose2gloss", default="models/pose2gloss/best", help="the published Stage I model")
    ap.add_argument("--frame-cache", default="data/frame_cache")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    model_cfg, train_cfg = configs_from_params(params.get("video2pose", {}) or {}, int(params.get("seed", 0)))
    if not has_videos(args.corpus):
        reason = (f"{args.corpus} has no videos (a corpus of .pose files): Stage II learns from video, so it is not "
                  "trained; Stage I serves the pose files")  # fmt: skip
        write_not_trained(args.out, reason)
        write_not_trained(args.live, reason)  # the curves' folder is an output too: it says why it has no curves
        write_metrics(args.metrics, {"trained": False, "reason": reason})
        print(f"train_video2pose: not trained: {reason}")
        return
    try:
        summary = train(model_cfg, train_cfg, args.pose2gloss, args.features, args.corpus, args.out,
                        args.frame_cache, args.live, work_dir=args.work)  # fmt: skip
    except ModelFileError as err:  # the frozen Stage I: missing, a pickle, or not a Stage I model
        raise SystemExit(f"train_video2pose: {err}") from None
    write_metrics(args.metrics, summary)
    print(f"train_video2pose: best val WER {summary['best_val_wer']:.2f} in {summary['train_seconds']} s")


if __name__ == "__main__":
    run_cli(main)
