"""Stage I's params: `pose2gloss` in params.yaml split into the network's config (`Pose2GlossConfig`) and the
training recipe (`TrainConfig`). Apart from the stage module so that `check_params` reads them without running
a stage."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.nets.losses import LOSS_NAMES
from pipeline.nets.pose2gloss import Pose2GlossConfig
from pipeline.training import split_params


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
    aug_track_subsets: tuple[float, float] = (0.0, 0.0)  # data.augment: share of utterances trained on a random
    # subset of their tracks, start -> end (docs/POSE2GLOSS.md, "Missing tracks")
    solo_epochs: int = 0  # after training, epochs that train solo encoders on one-track utterances, the rest frozen
    # (docs/POSE2GLOSS.md, "Solo encoders"); 0 = none. A model reading one track has none.
    tracks: tuple[str, ...] | None = None  # None: all five; else only these (single-track ablations)
    frame_stride: int = 2
    max_frames: int = 256
    checkpoint_every: int = 50  # optimizer steps between `last.pt` saves
    seed: int = 0
    device: str = "auto"


def configs_from_params(section: dict, seed: int) -> tuple[Pose2GlossConfig, TrainConfig]:
    """Split the `pose2gloss` params section into the model and training configs; unknown keys are errors."""
    internal = {"vocab_size", "track_names", "track_dims", "extra", "seed"}
    m, t = split_params(dict(section), "pose2gloss", Pose2GlossConfig, TrainConfig, internal, LOSS_NAMES)
    return Pose2GlossConfig(**m), TrainConfig(**t, seed=seed)
