"""Stage II's params: `video2pose` in params.yaml split into the network's config (`Video2PoseConfig`) and the
training recipe (`TrainVideoConfig`). Apart from the stage module so that `check_params` reads them without
running a stage."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.nets.video2pose import Video2PoseConfig
from pipeline.training import split_params

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
    # ctc and distill are ours (docs/VIDEO2POSE.md); a loss runs when switched on with a non-zero weight
    weights: dict = field(default_factory=lambda: {"recon": 1.0, "text": 1.0, "ctc": 1.0, "distill": 1.0})
    losses: dict = field(default_factory=lambda: {k: True for k in LOSSES})
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


def configs_from_params(section: dict, seed: int) -> tuple[Video2PoseConfig, TrainVideoConfig]:
    """Split the `video2pose` params section into the model and training configs; unknown keys are errors."""
    internal = {"track_dims", "extra", "seed"}
    m, t = split_params(dict(section), "video2pose", Video2PoseConfig, TrainVideoConfig, internal, LOSSES)
    return Video2PoseConfig(**m), TrainVideoConfig(**t, seed=seed)
