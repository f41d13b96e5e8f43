"""Training losses (Section 4, Table 2). Stage I: noise (Eq. 8), text (Eq. 9), word matching (Eq. 10), n-gram F1
and contrastive InfoNCE (Eq. 11), and the learnable weighting of Eq. 12. Stage II: masked reconstruction (Eq. 13).

Conventions: `logits` (B, L, V), `targets` (B, L) with PAD = ignored; every loss is a scalar tensor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.vocab import EOS, PAD

LOSS_NAMES = ("noise", "text", "word", "ngram", "contrast", "ctc")


def noise_loss(
    eps_pred: torch.Tensor,
    eps: torch.Tensor,
    frame_pad: torch.Tensor,
    snr: torch.Tensor | None = None,
    gamma: float = 5.0,
) -> torch.Tensor:
    """Eq. 8: mean squared error of the predicted noise over real (unpadded) frames.

    With `snr` (B,), each sample is weighted min(SNR, gamma) / SNR (min-SNR weighting, Hang et al. 2023), which
    keeps nearly noise-free timesteps from dominating when the noise is derived from a z0 estimate.
    """
    w = (~frame_pad).float().unsqueeze(-1)
    if snr is not None:
        w = w * (snr.clamp(max=gamma) / snr).view(-1, 1, 1)
    return (((eps_pred - eps) ** 2) * w).sum() / ((~frame_pad).sum() * eps.shape[-1]).clamp(min=1)


def text_loss(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.1) -> torch.Tensor:
    """Eq. 9: token cross-entropy with label smoothing (Table 2: 0.1), padding ignored."""
    return F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=PAD, label_smoothing=label_smoothing)


def word_matching_loss(logits: torch.Tensor, targets: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Eq. 10: 1 - cosine(expected predicted embedding, true embedding), averaged over real tokens.

    The predicted embedding is the codebook weighted by the predicted distribution, so the loss is differentiable.
    """
    keep = targets != PAD
    e_pred = logits.softmax(-1) @ codebook  # (B, L, d)
    e_true = codebook[targets]
    sim = F.cosine_similarity(e_pred, e_true, dim=-1)
    return ((1 - sim) * keep).sum() / keep.sum().clamp(min=1)


def ngram_f1_loss(logits: torch.Tensor, targets: torch.Tensor, max_n: int = 2) -> torch.Tensor:
    """1 - soft n-gram F1 between the predicted distributions and the reference, averaged over n = 1..max_n.

    Expected predicted count of an n-gram (g1..gn) = sum over positions of prod p_i(g_k); matches are clipped by the
    reference counts (as in BLEU). Only reference n-grams can match, so the cost is O(L * n) per sample.
    """
    probs = logits.softmax(-1)
    losses = []
    for b in range(targets.shape[0]):
        ref = targets[b][targets[b] != PAD].tolist()
        L = int((targets[b] != PAD).sum())
        p = probs[b, :L]
        f1s = []
        for n in range(1, max_n + 1):
            if L < n:
                continue
            counts: dict[tuple[int, ...], int] = {}
            for i in range(L - n + 1):
                g = tuple(ref[i : i + n])
                counts[g] = counts.get(g, 0) + 1
            matched = p.new_zeros(())
            for g, c in counts.items():
                pred = p[0 : L - n + 1, g[0]]
                for k in range(1, n):
                    pred = pred * p[k : L - n + 1 + k, g[k]]
                matched = matched + torch.minimum(pred.sum(), p.new_tensor(float(c)))
            total = float(L - n + 1)  # predicted and reference n-gram counts (same length under teacher forcing)
            precision, recall = matched / total, matched / total
            f1s.append(2 * precision * recall / (precision + recall).clamp(min=1e-8))
        if f1s:
            losses.append(1 - torch.stack(f1s).mean())
    return torch.stack(losses).mean() if losses else logits.new_zeros(())


def contrastive_loss(pose: torch.Tensor, text: torch.Tensor, tau: float | torch.Tensor = 0.07) -> torch.Tensor:
    """Eq. 11, symmetric InfoNCE over the batch: (B, d) pose and text embeddings, matched by index."""
    pose, text = F.normalize(pose, dim=-1), F.normalize(text, dim=-1)
    logits = pose @ text.T / tau
    labels = torch.arange(len(pose), device=pose.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def ctc_loss(frame_logits: torch.Tensor, frame_pad: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Auxiliary CTC on the fused frame features (not in the paper; `losses.ctc`): frame_logits (B, T, V) score
    each frame's gloss, PAD's class serves as the CTC blank, the targets' glosses (EOS and PAD dropped) are the
    label sequence. Mean over the batch of the per-utterance loss divided by its target length (PyTorch's
    `reduction="mean"`); impossible alignments (more glosses than frames) count as zero."""
    glosses = (targets != PAD) & (targets != EOS)
    logp = frame_logits.float().log_softmax(-1).transpose(0, 1)  # (T, B, V)
    return F.ctc_loss(
        logp, targets[glosses], (~frame_pad).sum(1), glosses.sum(1), blank=PAD, reduction="mean", zero_infinity=True
    )


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) of the per-position output distributions (Hinton et al. 2015, temperature 1), averaged
    over the positions where `keep` (B, N) is True. logits (B, N, V); the teacher's carry no gradient."""
    t = teacher_logits.detach().float().log_softmax(-1)
    kl = (t.exp() * (t - student_logits.float().log_softmax(-1))).sum(-1)  # (B, N)
    w = keep.to(kl.dtype)
    return (kl * w).sum() / w.sum().clamp(min=1)


def reconstruction_loss(
    pred: torch.Tensor, target: torch.Tensor, track_mask: torch.Tensor, track_dims: tuple[int, ...]
) -> torch.Tensor:
    """Eq. 13, sum over tracks i of ||P_hat_i - P_i||^2, each track's squared error averaged over its dims and over
    the frames where that track was really extracted (`track_mask`; padding frames are all-False). A frame an
    extractor missed has no ground truth, so it is never a target (its stored zeros are not a pose).

    pred, target (B, T, sum(track_dims)); track_mask (B, T, n_tracks) bool."""
    total = pred.new_zeros(())
    for p, t, m in zip(pred.split(track_dims, -1), target.split(track_dims, -1), track_mask.unbind(-1)):
        w = m.to(pred.dtype).unsqueeze(-1)  # (B, T, 1)
        total = total + (((p - t) ** 2) * w).sum() / (w.sum() * p.shape[-1]).clamp(min=1)
    return total


def text_embedding(targets: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Utterance-level text embedding (B, d): mean codebook vector of the reference glosses."""
    keep = (targets != PAD).float().unsqueeze(-1)
    return (codebook[targets] * keep).sum(1) / keep.sum(1).clamp(min=1.0)


class LossWeighting(nn.Module):
    """Eq. 12 with learnable coefficients: total = sum_k w_k * (exp(-s_k) * L_k + s_k), s_k learned
    (homoscedastic uncertainty weighting), w_k the Table 2 weight (with its schedule) of loss k. With
    `learnable=False` the total is sum_k w_k * L_k."""

    def __init__(self, names: tuple[str, ...] = LOSS_NAMES, learnable: bool = True):
        super().__init__()
        self.names = names
        self.learnable = learnable
        self.log_vars = nn.Parameter(torch.zeros(len(names)), requires_grad=learnable)

    def forward(self, losses: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
        total = next(iter(losses.values())).new_zeros(())
        for i, name in enumerate(self.names):
            if name not in losses or weights.get(name, 0.0) == 0.0:
                continue
            term = losses[name]
            if self.learnable:
                term = torch.exp(-self.log_vars[i]) * term + self.log_vars[i]
            total = total + weights[name] * term
        return total
