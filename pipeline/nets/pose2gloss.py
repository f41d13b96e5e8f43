"""Pose2Gloss (Stage I, Sections 3.2 and 4.1): multi-track pose features -> ID-gloss sequence.

    fused features (B, T, 1959), track mask (B, T, 5)
      -> per-track encoders E_i                         f_i    (B, T, 5, d_track)        Eq. 1
         (a frame that carries one track alone is read by that track's solo encoder, when the model has them)
      -> multi-head attention across the 5 tracks      f      (B, T, d_track)           Eq. 2
      -> PadMatch projection                           z0     (B, T, 2048)              Eq. 3
      -> inverse diffusion: a 1-D UNet over time predicts the noise of z_t (Eq. 4, 8), conditioned on f;
         training: the decoder reads z0 while the UNet learns the reverse process (L_noise);
         inference: the decoder reads the z0 that a DDIM reverse process recovers from noise
      -> transformer decoder, output layer tied to the gloss codebook (token embeddings)  logits (B, L, V)

Every named part can be switched off (`diffusion`, `fusion`) so its effect is measured. Schedulers come from
diffusers and stay outside the networks.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler
from torch import nn

from pipeline.checkpoints import as_tuples, load_model, rebuilding
from pipeline.decoding import DecoderLogits
from pipeline.layout import FUSED, FusedLayout
from pipeline.vocab import BOS, EOS, PAD


@dataclass
class Pose2GlossConfig:
    """Sizes and switches. Defaults are the CPU-sized model; `paper` sizes are in docs/POSE2GLOSS.md."""

    vocab_size: int = 104  # special tokens + glosses
    # the feature layout it reads (pipeline.layout); training sets both from the feature store's attributes
    track_names: tuple[str, ...] = FUSED.tracks
    track_dims: tuple[int, ...] = FUSED.dims
    d_track: int = 128  # per-track encoder width (d_h in Eq. 1)
    encoder_kernel: int = 5  # temporal kernel of each E_i (1: per-frame MLP; odd k: two 1-D convs over time)
    n_fusion_heads: int = 4
    unified_dim: int = 2048  # PadMatch output (Eq. 3)
    unet_channels: tuple[int, ...] = (64, 128)  # 1-D UNet widths, one level per entry
    d_model: int = 192  # decoder width
    n_memory_layers: int = 0  # transformer encoder layers over the decoder memory (self-attention across frames)
    n_decoder_layers: int = 3
    n_decoder_heads: int = 4
    dropout: float = 0.1
    max_len: int = 64  # gloss tokens incl. BOS / EOS
    max_frames: int = 1024
    memory_positions: str = "sinusoidal"  # frame positions in the decoder memory: learned | sinusoidal
    diffusion: bool = True  # False: the decoder reads z0 directly (no inverse diffusion)
    fusion: bool = True  # False: masked mean of track features instead of attention
    # one more encoder per track for the frames where it is the only track present; set by training's solo phase
    # (`TrainConfig.solo_epochs`), never from params
    solo_encoders: bool = False
    num_train_timesteps: int = 1000
    inference_steps: int = 10  # DDIM steps at inference
    extra: dict = field(default_factory=dict)


class TrackEncoders(nn.Module):
    """E_i: one encoder per track, from its native dims to d_track: two 1-D convolutions over time.

    With `solo` encoders (`add_solo`), a frame where track i is the only track present is read by solo encoder i
    instead: a track alone has to carry every gloss by itself, while beside the others it need only add what they
    lack, and one encoder trained for both does neither as well (docs/POSE2GLOSS.md, "Solo encoders")."""

    def __init__(self, cfg: Pose2GlossConfig):
        super().__init__()
        self.splits = list(cfg.track_dims)
        self.kernel = cfg.encoder_kernel
        if self.kernel % 2 == 0:
            raise ValueError(f"encoder_kernel must be odd (same-length convolution), got {self.kernel}")
        self.encoders = nn.ModuleList(self._encoder(d, cfg.d_track) for d in cfg.track_dims)
        self.solo = nn.ModuleList(self._encoder(d, cfg.d_track) for d in cfg.track_dims) if cfg.solo_encoders else None

    def _encoder(self, d_in: int, d_out: int) -> nn.Sequential:
        k = self.kernel  # a kernel-1 convolution is exactly a per-frame linear layer
        return nn.Sequential(
            nn.Conv1d(d_in, d_out, k, padding=k // 2), nn.GELU(), nn.Conv1d(d_out, d_out, k, padding=k // 2)
        )

    def add_solo(self) -> None:
        """Solo encoders starting from the trained shared ones (training's solo phase)."""
        self.solo = copy.deepcopy(self.encoders)

    def forward(self, x: torch.Tensor, track_mask: torch.Tensor) -> torch.Tensor:
        """(B, T, 1959), (B, T, 5) -> (B, T, 5, d_track)"""
        parts = torch.split(x.transpose(1, 2), self.splits, dim=1)  # each (B, d_i, T)
        out = [enc(p).transpose(1, 2) for enc, p in zip(self.encoders, parts)]  # each (B, T, d_track)
        if self.solo is not None:
            alone = track_mask & (track_mask.sum(-1, keepdim=True) == 1)  # (B, T, 5)
            for i, (enc, p) in enumerate(zip(self.solo, parts)):
                if alone[..., i].any():
                    out[i] = torch.where(alone[..., i, None], enc(p).transpose(1, 2), out[i])
        return torch.stack(out, dim=2)


class TrackFusion(nn.Module):
    """Multi-head attention across the tracks of each frame (Eq. 2). Masked tracks are never attended to, and
    the fused vector is the masked mean of the attended track tokens, so a missing track contributes nothing."""

    def __init__(self, cfg: Pose2GlossConfig):
        super().__init__()
        n = len(cfg.track_dims)
        self.track_embed = nn.Parameter(torch.randn(n, cfg.d_track) * 0.02)
        self.attn = nn.MultiheadAttention(cfg.d_track, cfg.n_fusion_heads, dropout=cfg.dropout, batch_first=True)
        self.norm = nn.LayerNorm(cfg.d_track)
        self.use_attention = cfg.fusion

    def forward(self, f: torch.Tensor, track_mask: torch.Tensor) -> torch.Tensor:
        B, T, K, D = f.shape  # (B, T, 5, d)
        tokens = (f + self.track_embed).reshape(B * T, K, D)
        keep = track_mask.reshape(B * T, K)
        any_track = keep.any(-1)
        if self.use_attention:
            # frames with no track at all attend to a dummy key and are zeroed below, so softmax never sees -inf only
            pad = ~keep & any_track[:, None]
            out, _ = self.attn(tokens, tokens, tokens, key_padding_mask=pad, need_weights=False)
            tokens = self.norm(tokens + out)
        w = keep.float().unsqueeze(-1)
        fused = (tokens * w).sum(1) / w.sum(1).clamp(min=1.0)
        return fused.reshape(B, T, D)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of diffusion timesteps: (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


class ResBlock1D(nn.Module):
    def __init__(self, c_in: int, c_out: int, d_time: int):
        super().__init__()
        self.conv1 = nn.Conv1d(c_in, c_out, 3, padding=1)
        self.conv2 = nn.Conv1d(c_out, c_out, 3, padding=1)
        self.norm1 = nn.GroupNorm(8, c_out)
        self.norm2 = nn.GroupNorm(8, c_out)
        self.time = nn.Linear(d_time, c_out)
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:  # (B, C, T), (B, d_time)
        h = F.silu(self.norm1(self.conv1(x)))
        h = h + self.time(temb)[:, :, None]
        h = F.silu(self.norm2(self.conv2(h)))
        return h + self.skip(x)


class UNet1D(nn.Module):
    """A small 1-D UNet over time that estimates z0 from z_t, conditioned on the fused pose features.

    It predicts the clean sample (diffusers' prediction_type "sample") rather than the noise: a 2048-dim noise
    vector cannot pass through a 64-channel bottleneck, while z0 lies on the low-dimensional manifold of PadMatch
    outputs. The noise estimate of Eq. 8 follows exactly from it (`Pose2Gloss.predict_noise`)."""

    def __init__(self, cfg: Pose2GlossConfig):
        super().__init__()
        chans = list(cfg.unet_channels)
        d_time = 4 * chans[0]
        self.d_time = chans[0]
        self.time_mlp = nn.Sequential(nn.Linear(chans[0], d_time), nn.SiLU(), nn.Linear(d_time, d_time))
        self.inp = nn.Conv1d(cfg.unified_dim + cfg.d_track, chans[0], 3, padding=1)
        self.down = nn.ModuleList()
        c = chans[0]
        for c_next in chans:
            self.down.append(ResBlock1D(c, c_next, d_time))
            c = c_next
        self.mid = ResBlock1D(c, c, d_time)
        self.up = nn.ModuleList()
        for c_skip in reversed(chans):
            self.up.append(ResBlock1D(c + c_skip, c_skip, d_time))
            c = c_skip
        self.out = nn.Conv1d(c, cfg.unified_dim, 3, padding=1)

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        # z_t (B, T, 2048), t (B,), cond (B, T, d_track) -> estimated z0 (B, T, 2048)
        temb = self.time_mlp(timestep_embedding(t, self.d_time))
        T = z_t.shape[1]
        h = self.inp(torch.cat([z_t, cond], dim=-1).transpose(1, 2))  # (B, C, T)
        skips = []
        for i, block in enumerate(self.down):
            h = block(h, temb)
            skips.append(h)
            if i < len(self.down) - 1:
                h = F.avg_pool1d(h, 2, ceil_mode=True)
        h = self.mid(h, temb)
        for block in self.up:
            skip = skips.pop()
            h = F.interpolate(h, size=skip.shape[-1], mode="nearest") if h.shape[-1] != skip.shape[-1] else h
            h = block(torch.cat([h, skip], dim=1), temb)
        return self.out(h)[..., :T].transpose(1, 2)


class GlossDecoder(nn.Module):
    """Transformer decoder over the pose memory; its output layer is the gloss codebook (tied embeddings)."""

    def __init__(self, cfg: Pose2GlossConfig):
        super().__init__()
        self.codebook = nn.Embedding(cfg.vocab_size, cfg.d_model, padding_idx=PAD)
        nn.init.normal_(self.codebook.weight, std=0.02)  # tied output layer: small initial logits (GPT-2 init)
        with torch.no_grad():
            self.codebook.weight[PAD].zero_()
        self.d_model = cfg.d_model
        self.pos = nn.Embedding(cfg.max_len, cfg.d_model)
        if cfg.memory_positions not in ("learned", "sinusoidal"):
            raise ValueError(f"memory_positions must be 'learned' or 'sinusoidal', got {cfg.memory_positions!r}")
        self.mem_pos = nn.Embedding(cfg.max_frames, cfg.d_model) if cfg.memory_positions == "learned" else None
        self.memory_proj = nn.Sequential(nn.LayerNorm(cfg.unified_dim), nn.Linear(cfg.unified_dim, cfg.d_model))
        self.memory_encoder = (
            nn.TransformerEncoder(
                nn.TransformerEncoderLayer(
                    cfg.d_model, cfg.n_decoder_heads, 4 * cfg.d_model, cfg.dropout, batch_first=True, norm_first=True
                ),
                cfg.n_memory_layers,
                enable_nested_tensor=False,
            )
            if cfg.n_memory_layers
            else None
        )
        layer = nn.TransformerDecoderLayer(
            cfg.d_model, cfg.n_decoder_heads, 4 * cfg.d_model, cfg.dropout, batch_first=True, norm_first=True
        )
        self.layers = nn.TransformerDecoder(layer, cfg.n_decoder_layers)
        self.norm = nn.LayerNorm(cfg.d_model)

    def memory(self, z: torch.Tensor, frame_pad: torch.Tensor | None = None) -> torch.Tensor:
        # (B, T, 2048) -> (B, T, d_model); frame_pad (B, T) True where padding
        pos = torch.arange(z.shape[1], device=z.device)
        if self.mem_pos is None:  # fixed sinusoids: defined for any length, nothing to learn from few utterances
            m = self.memory_proj(z) + timestep_embedding(pos, self.d_model)
        else:
            m = self.memory_proj(z) + self.mem_pos(pos.clamp(max=self.mem_pos.num_embeddings - 1))
        if self.memory_encoder is not None:
            m = self.memory_encoder(m, src_key_padding_mask=frame_pad)
        return m

    def forward(self, tokens: torch.Tensor, memory: torch.Tensor, frame_pad: torch.Tensor) -> torch.Tensor:
        # tokens (B, L) -> logits (B, L, V); memory (B, T, d_model); frame_pad (B, T) True where padding
        L = tokens.shape[1]
        x = self.codebook(tokens) + self.pos(torch.arange(L, device=tokens.device))
        causal = torch.triu(torch.ones(L, L, dtype=torch.bool, device=tokens.device), 1)
        h = self.layers(
            x, memory, tgt_mask=causal, tgt_key_padding_mask=tokens == PAD, memory_key_padding_mask=frame_pad
        )
        return self.norm(h) @ self.codebook.weight.T


class Pose2Gloss(nn.Module):
    def __init__(self, cfg: Pose2GlossConfig):
        super().__init__()
        self.cfg = cfg
        self.encoders = TrackEncoders(cfg)
        self.fusion = TrackFusion(cfg)
        # PadMatch (Eq. 3); the parameter-free LayerNorm keeps z0 at the unit scale the noise schedule assumes
        self.padmatch = nn.Sequential(
            nn.Linear(cfg.d_track, cfg.unified_dim), nn.LayerNorm(cfg.unified_dim, elementwise_affine=False)
        )
        self.unet = UNet1D(cfg) if cfg.diffusion else None
        self.decoder = GlossDecoder(cfg)
        self.pose_proj = nn.Linear(cfg.d_track, cfg.d_model)  # pose embedding for the contrastive loss
        self.ctc_head = nn.Linear(cfg.d_track, cfg.vocab_size)  # per-frame gloss scores for the auxiliary CTC loss
        self.ctc_trained = True  # set from the checkpoint: False when trained without the CTC loss

        # how it reads the feature store (tracks, frame_stride, max_frames: `load_split` keywords); set by training
        self.data_options: dict = {}
        # the store's normalisation and the vocabulary (`data.input_spec`), to read poses from elsewhere; set by
        # training (empty in a model published before they were)
        self.input_spec: dict = {}

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Pose2Gloss:
        """A model published by `train_pose2gloss` (`best`, `q25` ... `q100`: `.safetensors` + `.json`), in eval
        mode, with the `data_options` its inputs must be read with. Nothing in the files is executed."""
        state, config = load_model(path, map_location)
        with rebuilding(path, "Stage I (Pose2Gloss)"):
            model = cls(Pose2GlossConfig(**as_tuples(config["model_config"]))).to(map_location)
            model.load_state_dict(state)
        model.data_options = dict(config.get("data_options") or {})
        model.ctc_trained = bool(config.get("ctc_trained", False))
        model.input_spec = dict(config.get("input_spec") or {})
        return model.eval()

    def published_config(self) -> dict:
        """What `from_checkpoint` needs beside the weights."""
        return {"model_config": asdict(self.cfg), "data_options": self.data_options, "ctc_trained": self.ctc_trained,
                "input_spec": self.input_spec}  # fmt: skip

    def tracks_read(self) -> list[bool]:
        """Per track of its layout: whether it was trained to read it (`data_options.tracks`; None: all)."""
        return FusedLayout(self.cfg.track_names, self.cfg.track_dims).use(self.data_options.get("tracks")).tolist()

    def encode(self, x: torch.Tensor, track_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, 1959), (B, T, 5) -> fused features f (B, T, d_track) and z0 = PadMatch(f) (B, T, 2048)."""
        x = x * track_mask.repeat_interleave(torch.tensor(self.cfg.track_dims, device=x.device), dim=-1)
        f = self.fusion(self.encoders(x, track_mask), track_mask)
        return f, self.padmatch(f)

    def pose_embedding(self, f: torch.Tensor, frame_pad: torch.Tensor) -> torch.Tensor:
        """Utterance-level pose embedding (B, d_model): masked mean over frames."""
        w = (~frame_pad).float().unsqueeze(-1)
        return self.pose_proj((f * w).sum(1) / w.sum(1).clamp(min=1.0))

    @torch.no_grad()
    def denoise(self, f: torch.Tensor, scheduler, generator: torch.Generator | None = None) -> torch.Tensor:
        """Inverse diffusion at inference: from noise to z0 with a DDIM (or any diffusers) scheduler."""
        B, T, _ = f.shape
        z = torch.randn((B, T, self.cfg.unified_dim), generator=generator, device=f.device)
        scheduler.set_timesteps(self.cfg.inference_steps)
        for t in scheduler.timesteps:
            z0_hat = self.unet(z, t.expand(B).to(f.device), f)
            z = scheduler.step(z0_hat, t, z).prev_sample
        return z

    @torch.no_grad()
    def inference(
        self,
        features: torch.Tensor,
        track_mask: torch.Tensor,
        frame_pad: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """What decoding reads: the decoder's memory (B, T, d_model), from z0 through the DDIM reverse process
        when diffusion is on (PadMatch(f) directly otherwise), and the CTC head's frame log-probabilities
        (B, T, V), None when the head was not trained (`losses.ctc` off)."""
        f, z0 = self.encode(features, track_mask)
        if self.cfg.diffusion:
            z0 = self.denoise(f, make_schedulers(self.cfg)[1], generator)
        ctc_logp = self.ctc_head(f).float().log_softmax(-1) if self.ctc_trained else None
        return self.decoder.memory(z0, frame_pad), ctc_logp

    def next_logits_fn(self, memory: torch.Tensor, frame_pad: torch.Tensor) -> DecoderLogits:
        """`next_logits(tokens (N, n), rows (N,)) -> (N, V)`, what `pipeline.decoding` searches with."""
        return DecoderLogits(self.decoder, memory, frame_pad)

    def predict_noise(self, z_t: torch.Tensor, t: torch.Tensor, f: torch.Tensor, scheduler) -> torch.Tensor:
        """The noise estimate of Eq. 8, eps = (z_t - sqrt(abar) z0_hat) / sqrt(1 - abar), from the UNet's z0."""
        abar = scheduler.alphas_cumprod.to(z_t.device)[t].view(-1, 1, 1)
        return (z_t - abar.sqrt() * self.unet(z_t, t, f)) / (1 - abar).sqrt()

    def forward(self, tokens: torch.Tensor, memory_z: torch.Tensor, frame_pad: torch.Tensor) -> torch.Tensor:
        """Decoder logits (B, L, V) for input tokens given the (denoised) unified representation."""
        return self.decoder(tokens, self.decoder.memory(memory_z, frame_pad), frame_pad)


def make_schedulers(cfg: Pose2GlossConfig) -> tuple[DDPMScheduler, DDIMScheduler]:
    """DDPM for training (add_noise), DDIM for few-step inference; no clipping: z0 is not an image in [-1, 1]."""
    ddpm = DDPMScheduler(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_schedule="squaredcos_cap_v2",
        clip_sample=False,
        prediction_type="sample",
    )
    return ddpm, DDIMScheduler.from_config(ddpm.config)


def snr(scheduler: DDPMScheduler, t: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio abar / (1 - abar) of timesteps t (B,)."""
    abar = scheduler.alphas_cumprod.to(t.device)[t]
    return abar / (1 - abar)


def shift_right(targets: torch.Tensor) -> torch.Tensor:
    """Decoder inputs from targets `[g1 .. gn EOS PAD..]`: `[BOS g1 .. gn PAD..]`."""
    inp = torch.full_like(targets, PAD)
    inp[:, 0] = BOS
    inp[:, 1:] = targets[:, :-1]
    inp[inp == EOS] = PAD
    return inp
