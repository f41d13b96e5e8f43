"""`train_pose2gloss` stage: Stage I training (Section 4.1, Table 2).

    python -m pipeline.train_pose2gloss [--params params.yaml]

AdamW, linear warmup then cosine decay to `min_lr_ratio` x lr, gradient accumulation and clipping, the Table 2
loss weights with the noise-weight and teacher-forcing schedules, and the learnable weighting of Eq. 12. Publishes
to `models/pose2gloss/` the weights (`.safetensors` + `.json`, `pipeline.checkpoints`) at 25 / 50 / 75 / 100 % of
training (`q25` ... `q100`, Fig. 3) and the best on validation WER (`best`); `models/.work/pose2gloss/last.pt`
is the resume point of a killed run (`pipeline.training.TrainingRun`; never published). DVCLive curves go to
`metrics/train_pose2gloss/`.

Then, for a model that reads more than one track, the solo phase (`solo_epochs`; docs/POSE2GLOSS.md, "Solo
encoders"): `best` gets one solo encoder per track, a copy of its trained encoder, that reads the frames where the
track is the only one present; they alone are trained, on one-track utterances, and `best` is published again with
them (curves in `metrics/train_pose2gloss/solo/`, resume point in `models/.work/pose2gloss/solo/`).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import numpy as np
import torch

from pipeline import data as data_module
from pipeline import scoring
from pipeline import training as training_module
from pipeline.checkpoints import load_model
from pipeline.data import (
    Utterance,
    augment,
    bucket_batches,
    collate,
    feature_layout,
    input_spec,
    keep_one_track,
    load_split,
)
from pipeline.decoding import validation_decode
from pipeline.devices import autocast, resolve_device, set_training_threads
from pipeline.nets import losses as losses_module
from pipeline.nets import pose2gloss as pose2gloss_net
from pipeline.nets.losses import (
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
from pipeline.params import load_params, run_cli, write_metrics
from pipeline.pose2gloss_config import TrainConfig, configs_from_params
from pipeline.training import TrainingRun, active_losses, optimiser, run_fingerprint, stage_parser
from pipeline.vocab import PAD, Vocab


def _linear(schedule: tuple[float, float], progress: float) -> float:
    return schedule[0] + (schedule[1] - schedule[0]) * progress


def loss_weights(cfg: TrainConfig, progress: float) -> dict[str, float]:
    """Each loss's weight at `progress` (0 -> 1) through training: Table 2's, with the noise weight's schedule."""
    return {**cfg.weights, "noise": _linear(cfg.noise_weight, progress)}


@torch.no_grad()
def validation_wer(model: Pose2Gloss, data: list[Utterance], vocab: Vocab, device: torch.device, bs: int = 32) -> float:
    """Validation WER (`scoring.wer`) of greedy decoding through the DDIM reverse process (`validation_decode`)."""
    hyps, refs = [], []
    model.eval()  # the training loop sets train mode again at the next epoch
    for s in range(0, len(data), bs):
        items = data[s : s + bs]
        batch = {k: v.to(device) for k, v in collate(items).items()}
        with autocast(device):
            ids = validation_decode(model, batch["features"], batch["track_mask"], batch["frame_pad"])
        hyps += [vocab.decode(row.tolist()) for row in ids]
        refs += [u.glosses for u in items]
    return scoring.wer(refs, hyps)["wer"]


def training_losses(
    model: Pose2Gloss,
    batch: dict,
    cfg: TrainConfig,
    progress: float,
    sched,
    gen: torch.Generator,
) -> dict[str, torch.Tensor]:
    """Every active Stage I loss for one batch (`loss_weights`, `training.active_losses`)."""
    on = active_losses(cfg.losses, loss_weights(cfg, progress))
    f, z0 = model.encode(batch["features"], batch["track_mask"])
    targets, pad = batch["targets"], batch["frame_pad"]
    out: dict[str, torch.Tensor] = {}
    if model.cfg.diffusion and "noise" in on:
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
    if "text" in on:
        out["text"] = text_loss(logits, targets, cfg.label_smoothing)
    if "word" in on:
        out["word"] = word_matching_loss(logits, targets, codebook)
    if "ngram" in on:
        out["ngram"] = ngram_f1_loss(logits, targets)
    if "ctc" in on:
        out["ctc"] = ctc_loss(model.ctc_head(f), pad, targets)
    if "contrast" in on:
        out["contrast"] = contrastive_loss(
            model.pose_embedding(f, pad), text_embedding(targets, codebook), cfg.contrast_tau
        )
    return out


def train(
    model_cfg: Pose2GlossConfig, cfg: TrainConfig, features: str | os.PathLike, corpus: str | os.PathLike,
    out_dir: str | os.PathLike, live_dir: str | os.PathLike | None = None, max_steps: int | None = None,
    work_dir: str | os.PathLike | None = None,
) -> dict:  # fmt: skip
    """Train (or resume) Stage I; publish `best` and the quarters to `out_dir`. `max_steps` stops early without
    finishing (a simulated kill, for the resume tests). The run lives in `work_dir` (default: `out_dir`), outside
    the stage's DVC output, which DVC deletes before rerunning a stage (`training.TrainingRun`)."""
    device = resolve_device(cfg.device)
    set_training_threads()
    vocab = Vocab.load(Path(corpus) / "vocab.json")
    model_cfg.vocab_size = len(vocab)
    layout = feature_layout(features)
    model_cfg.track_names, model_cfg.track_dims = layout.tracks, layout.dims
    # how the model reads the store; published with it so that evaluation reads it the same way
    data_options = dict(tracks=cfg.tracks, frame_stride=cfg.frame_stride, max_frames=cfg.max_frames)
    train_data = load_split(features, corpus, vocab, "train", **data_options, max_len=model_cfg.max_len)
    val_data = load_split(features, corpus, vocab, "val", **data_options, max_len=model_cfg.max_len)
    if not train_data:
        raise ValueError("the train split is empty")

    torch.manual_seed(cfg.seed)
    model = Pose2Gloss(model_cfg).to(device)
    model.data_options = data_options
    model.input_spec = input_spec(features, vocab)  # published: a user's poses are read with it, without the store
    model.ctc_trained = "ctc" in active_losses(cfg.losses, cfg.weights)  # decoding may use the head only if trained
    weighting = LossWeighting(learnable=cfg.learnable_weights).to(device)
    params = list(model.parameters()) + ([weighting.log_vars] if cfg.learnable_weights else [])
    opt, lr_sched, total = optimiser(params, cfg, len(train_data))
    sched, _ = make_schedulers(model_cfg)
    gen = torch.Generator().manual_seed(cfg.seed)  # noise and scheduled sampling: one stream across steps
    code = [sys.modules[__name__], sys.modules[TrainConfig.__module__], pose2gloss_net, losses_module, data_module,
            training_module]  # fmt: skip
    # the solo phase's length is not part of this phase's identity: changing it keeps this phase's finished run
    main_fingerprint = run_fingerprint([model_cfg, dataclasses.replace(cfg, solo_epochs=0)], code, features, corpus)
    run = TrainingRun(
        "train_pose2gloss", work_dir or out_dir, out_dir, main_fingerprint,
        total, cfg.seed, live_dir, max_steps, quarters=True, checkpoint_every=cfg.checkpoint_every,
        generators={"noise": gen}, model=model, weighting=weighting, optimizer=opt, lr_scheduler=lr_sched,
    )  # fmt: skip
    dims = model_cfg.track_dims
    while run.epoch < cfg.epochs:
        order = bucket_batches([len(u.features) for u in train_data], cfg.batch_size,
                               np.random.default_rng([cfg.seed, run.epoch]))  # fmt: skip
        model.train()
        for idx in run.remaining(order):
            aug_rng, progress = run.step_rng(), run.step_count / total
            subsets = _linear(cfg.aug_track_subsets, progress)
            items = [augment(train_data[i], aug_rng, dims, cfg.aug_speed, cfg.aug_noise, subsets) for i in idx]
            batch = {k: v.to(device) for k, v in collate(items).items()}
            with autocast(device):
                losses = training_losses(model, batch, cfg, progress, sched, gen)
            loss = weighting(losses, loss_weights(cfg, progress)) / cfg.grad_accum
            if run.backward(loss, losses, len(order), cfg.grad_accum) and run.step(params, cfg.clip):
                return run.stopped()
        run.end_epoch({"val/wer": validation_wer(model, val_data, vocab, device)} if val_data else {})
    summary = run.finish(device)
    if cfg.solo_epochs <= 0 or sum(model.tracks_read()) < 2:
        return summary
    # where the run lives in `out_dir`, a finished solo phase has published its `best` there: its shared weights
    # are the main phase's, frozen, so they are what is read either way
    work = Path(work_dir or out_dir)
    state, _ = load_model(work / "best", device)
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith("encoders.solo.")})
    solo = train_solo(
        model, cfg, train_data, device, run_fingerprint([model_cfg, cfg], code, features, corpus),
        work / "solo", out_dir, live_dir and Path(live_dir) / "solo",
        None if max_steps is None else max_steps - run.steps_this_run,
    )  # fmt: skip
    if "stopped_at_step" in solo:
        return solo
    return summary | {"solo": {k: solo[k] for k in ("epochs", "steps", "final", "train_seconds")}}  # nothing validated


def train_solo(
    model: Pose2Gloss, cfg: TrainConfig, train_data: list[Utterance], device: torch.device, fingerprint: str,
    work_dir: Path, out_dir: str | os.PathLike, live_dir: Path | None = None, max_steps: int | None = None,
) -> dict:  # fmt: skip
    """The solo phase: solo encoders copied from the trained ones, trained alone for `cfg.solo_epochs` on
    one-track utterances with the losses and weights the main phase ends with (no L_noise, no teacher forcing);
    publishes `best` with them (the last weights: the shared model is `best` already, and only one-track frames
    read what changes)."""
    model.cfg.solo_encoders = True
    model.encoders.add_solo()
    model.requires_grad_(False)
    params = list(model.encoders.solo.parameters())
    for p in params:
        p.requires_grad_(True)
    opt, lr_sched, total = optimiser(params, dataclasses.replace(cfg, epochs=cfg.solo_epochs), len(train_data))
    sched, _ = make_schedulers(model.cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    run = TrainingRun(
        "train_pose2gloss solo", work_dir, out_dir, fingerprint, total, cfg.seed, live_dir, max_steps,
        checkpoint_every=cfg.checkpoint_every, generators={"noise": gen}, model=model, optimizer=opt,
        lr_scheduler=lr_sched,
    )  # fmt: skip
    weighting, weights = LossWeighting(learnable=False), loss_weights(cfg, 1.0)
    while run.epoch < cfg.solo_epochs:
        order = bucket_batches([len(u.features) for u in train_data], cfg.batch_size,
                               np.random.default_rng([cfg.seed, run.epoch]))  # fmt: skip
        model.train()
        for idx in run.remaining(order):
            rng = run.step_rng()
            items = [keep_one_track(train_data[i], rng, model.cfg.track_dims) for i in idx]
            batch = {k: v.to(device) for k, v in collate(items).items()}
            with autocast(device):
                losses = training_losses(model, batch, cfg, 1.0, sched, gen)
            if run.backward(weighting(losses, weights), losses, len(order), 1) and run.step(params, cfg.clip):
                return run.stopped()
        run.end_epoch({})
    return run.finish(device)


def main(argv: list[str] | None = None) -> None:
    args = stage_parser(__doc__, "pose2gloss").parse_args(argv)
    params = load_params(args.params)
    model_cfg, train_cfg = configs_from_params(params.get("pose2gloss", {}) or {}, int(params.get("seed", 0)))
    summary = train(model_cfg, train_cfg, args.features, args.corpus, args.out, args.live, work_dir=args.work)
    write_metrics(args.metrics, summary)
    solo = f", solo phase {summary['solo']['train_seconds']} s" if "solo" in summary else ""
    print(f"train_pose2gloss: best val WER {summary['best_val_wer']:.2f} in {summary['train_seconds']} s{solo}")


if __name__ == "__main__":
    run_cli(main)
