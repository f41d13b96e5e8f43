"""Video2Pose (Stage II, Sections 3.3 and 4.2): video frames -> the five pose tracks in the fused store's space.

    frames (B, T, 3, H, W), frame_pad (B, T)
      -> spatial ViT per frame (timm), its tokens pooled   v_t     (B, T, d_frame)        Eq. 5
      -> temporal transformer over the frames              v_temp  (B, T, d_temporal)     Eq. 6
      -> one linear projection per track                   P_i     (B, T, dims_i)         Eq. 7
      -> concatenated in track order                       (B, T, 1959), normalised like data/features.zarr

Video2Gloss is this module followed by the frozen Pose2Gloss. The ViT runs on real frames only (padding frames
are never encoded), which is most of the compute.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import timm
import torch
from timm.layers import HybridEmbed
from timm.models.vision_transformer import VisionTransformer
from timm.models.vision_transformer_hybrid import ConvStem
from torch import nn

from pipeline.checkpoints import as_tuples, load_model, rebuilding
from pipeline.layout import FUSED
from pipeline.nets.pose2gloss import timestep_embedding


@dataclass
class Video2PoseConfig:
    """Sizes of the CPU default; the `paper` preset (ViT-B/16 at 224) is in docs/VIDEO2POSE.md."""

    img_size: int = 48  # frames are resized to img_size x img_size
    backbone: str | None = None  # a timm model name (e.g. "vit_base_patch16_224"); None: the ViT sized below
    pretrained: str | None = None  # local checkpoint file for `backbone` (never downloaded)
    patch_size: int = 16  # each token covers patch_size x patch_size pixels
    stem: str = "conv"  # conv: log2(patch_size) stride-2 3x3 convolutions; patch: ViT's linear patchify
    # conv stem only: > 1 makes its first layer a stem_patch x stem_patch patchify convolution (stride stem_patch,
    # as ConvNeXt's stem), followed by 3x3 stride-2 convolutions up to patch_size; 1: all 3x3 stride-2
    stem_patch: int = 4
    vit_dim: int = 128  # d_v of Eq. 5
    vit_depth: int = 1  # the default budget favours epochs over depth (docs/VIDEO2POSE.md)
    vit_heads: int = 4
    d_temporal: int = 192
    temporal_layers: int = 2
    temporal_heads: int = 4
    # how a frame's patch tokens become one vector: "avg" (their mean) or "tokens" (each token projected to
    # token_dim and concatenated in grid order, which keeps where in the frame each token is: where the hands are)
    pool: str = "tokens"
    token_dim: int = 32
    dropout: float = 0.0  # measured: no worse than 0.1 at the CPU default, and cheaper steps
    track_dims: tuple[int, ...] = FUSED.dims  # training sets it from the feature store's layout
    pixel_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    pixel_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    extra: dict = field(default_factory=dict)


def build_vit(cfg: Video2PoseConfig) -> VisionTransformer:
    """The spatial ViT: a named timm model (optionally with local pretrained weights), or one sized by `cfg`.
    Either way it returns one pooled feature vector per frame (`num_classes=0`)."""
    if cfg.backbone is None:
        if cfg.pretrained:
            raise ValueError("video2pose.pretrained needs video2pose.backbone (the timm model the weights are for)")
        if cfg.stem not in ("conv", "patch"):
            raise ValueError(f"video2pose.stem must be 'conv' or 'patch', got {cfg.stem!r}")
        embed: dict = {}
        if cfg.stem == "conv":
            # Early convolutions (Xiao et al. 2021, "Early convolutions help transformers see better"): a stride-2
            # conv stack in place of the patchify layer, as in timm's hybrid ViTs; same token grid and transformer.
            # Measured here with token pooling: Video2Gloss test WER 59.0 vs 63.1, the unseen signer 81.3 vs 114.8,
            # for 13 % more training time (docs/VIDEO2POSE.md); with mean-pooled tokens it made no difference
            n_halvings = int(math.log2(cfg.patch_size / cfg.stem_patch))
            if cfg.stem_patch < 1 or 2**n_halvings * cfg.stem_patch != cfg.patch_size:
                raise ValueError(
                    f"the conv stem needs patch_size = stem_patch x a power of two, got {cfg.patch_size} and "
                    f"{cfg.stem_patch}"
                )
            first = [(cfg.stem_patch, cfg.stem_patch, 0)] if cfg.stem_patch > 1 else []  # (kernel, stride, padding)
            layers = first + [(3, 2, 1)] * n_halvings
            depth = len(layers)
            channels = tuple(max(16, cfg.vit_dim // 2 ** (depth - 1 - i)) for i in range(depth))
            kernel, stride, padding = (tuple(x) for x in zip(*layers))
            stem = ConvStem(3, depth, channels, kernel, stride, padding)
            embed = {"embed_layer": partial(HybridEmbed, backbone=stem)}
        return VisionTransformer(
            img_size=cfg.img_size,
            global_pool="avg" if cfg.pool == "avg" else "",
            patch_size=1 if cfg.stem == "conv" else cfg.patch_size,  # conv: one token per stem output pixel
            embed_dim=cfg.vit_dim,
            depth=cfg.vit_depth,
            num_heads=cfg.vit_heads,
            num_classes=0,
            class_token=False,
            drop_rate=cfg.dropout,
            **embed,
        )
    kwargs: dict = {"num_classes": 0, "img_size": cfg.img_size}
    if cfg.pool == "tokens":
        kwargs["global_pool"] = ""
    if cfg.pretrained:
        if not Path(cfg.pretrained).is_file():
            raise FileNotFoundError(
                f"video2pose.pretrained: no checkpoint at {cfg.pretrained} (download the timm weights for "
                f"{cfg.backbone} yourself, e.g. from the Hugging Face hub, and set this param to the file)"
            )
        # timm reads the file instead of the hub; it adapts the position embedding to img_size
        overlay = {"file": str(Path(cfg.pretrained).resolve()), "custom_load": False}  # a PyTorch state dict
        kwargs |= {"pretrained": True, "pretrained_cfg_overlay": overlay}
    return timm.create_model(cfg.backbone, **kwargs)


class Video2Pose(nn.Module):
    def __init__(self, cfg: Video2PoseConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.pool not in ("avg", "tokens"):
            raise ValueError(f"video2pose.pool must be 'avg' or 'tokens', got {cfg.pool!r}")
        self.vit = build_vit(cfg)
        d_v = self.vit.num_features
        if cfg.pool == "tokens":
            n_tokens = self.vit.patch_embed.num_patches
            self.token_proj = nn.Linear(d_v, cfg.token_dim)
            self.frame_proj = nn.Linear(n_tokens * cfg.token_dim, cfg.d_temporal)
        else:
            self.token_proj = None
            self.frame_proj = nn.Linear(d_v, cfg.d_temporal)
        self.temporal = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(
                cfg.d_temporal, cfg.temporal_heads, 4 * cfg.d_temporal, cfg.dropout, batch_first=True, norm_first=True
            ),
            cfg.temporal_layers,
            enable_nested_tensor=False,
        )
        self.norm = nn.LayerNorm(cfg.d_temporal)
        self.heads = nn.ModuleList(nn.Linear(cfg.d_temporal, d) for d in cfg.track_dims)  # Projection_i (Eq. 7)
        self.register_buffer("pixel_mean", torch.tensor(cfg.pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(cfg.pixel_std).view(1, 3, 1, 1), persistent=False)

        self.frame_options: dict = {}  # how its frames are prepared (FrameSpec: size, stride, max_frames)
        self.teacher_sha256: str | None = None  # sha256 of the Stage I weights it was trained against (`recognize`)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Video2Pose:
        """A model published by `train_video2pose` (`best`: `.safetensors` + `.json`), in eval mode, with the
        `frame_options` its frames must be prepared with. Nothing in the files is executed."""
        state, config = load_model(path, map_location)
        with rebuilding(path, "Stage II (Video2Pose)"):
            cfg = Video2PoseConfig(**as_tuples(config["model_config"]))
            cfg.pretrained = None  # the trained weights replace whatever the backbone started from
            model = cls(cfg).to(map_location)
            model.load_state_dict(state)
        model.frame_options = dict(config.get("frame_options") or {})
        model.teacher_sha256 = config.get("teacher_sha256")
        return model.eval()

    def published_config(self) -> dict:
        """What `from_checkpoint` needs beside the weights."""
        return {"model_config": asdict(self.cfg), "frame_options": self.frame_options,
                "teacher_sha256": self.teacher_sha256}  # fmt: skip

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, H, W, 3) uint8 frames -> (N, d_frame) ViT features (Eq. 5): d_v with `avg` pooling,
        n_tokens x token_dim with `tokens`."""
        x = frames.permute(0, 3, 1, 2).float().div_(255.0)  # (N, 3, H, W), channels-last in memory
        x = self.vit((x - self.pixel_mean) / self.pixel_std)  # (N, d_v), or (N, prefix + n_tokens, d_v) unpooled
        if self.token_proj is None:
            return x
        tokens = x[:, self.vit.num_prefix_tokens :]  # (N, n_tokens, d_v) in grid order
        return self.token_proj(tokens).flatten(1)  # (N, n_tokens * token_dim)

    def forward(self, frames: torch.Tensor, frame_pad: torch.Tensor) -> torch.Tensor:
        """frames (B, T, H, W, 3) uint8, frame_pad (B, T) True where padding -> tracks (B, T, 1959)."""
        B, T = frame_pad.shape
        real = ~frame_pad
        v = self.frame_proj(self.encode_frames(frames[real]))  # (N, d_temporal), N real frames
        h = v.new_zeros(B, T, self.cfg.d_temporal)  # v's dtype: bfloat16 under CUDA autocast
        h[real] = v
        h = h + timestep_embedding(torch.arange(T, device=h.device), self.cfg.d_temporal).to(h.dtype)
        h = self.norm(self.temporal(h, src_key_padding_mask=frame_pad))  # (B, T, d_temporal)  Eq. 6
        return torch.cat([head(h) for head in self.heads], dim=-1)  # (B, T, 1959)  Eq. 7
