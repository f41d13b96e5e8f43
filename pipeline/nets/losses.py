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
    reference counts (as in BLEU). Only reference n-grams can match, so the cost is O(L^2 * n) per sample, computed
    for the whole batch at once (a Python loop over samples and n-grams was a tenth of a Stage I step).
    """
    B, L = targets.shape
    keep = targets != PAD  # (B, L): the reference, a prefix of each row (gloss ids then EOS)
    lengths = keep.sum(1)  # (B,)
    tokens = targets.masked_fill(~keep, 0)
    # p_ref[b, j, i]: the predicted probability, at position j, of the reference token at position i
    p_ref = logits.softmax(-1).gather(-1, tokens.unsqueeze(1).expand(B, L, L))  # (B, L, L)
    positions = torch.arange(L, device=targets.device)
    f1s, has = [], []
    for n in range(1, max_n + 1):
        m = L - n + 1  # n-gram start positions in the padded rows
        if m < 1:
            break
        valid = positions[:m].unsqueeze(0) < (lengths - n + 1).unsqueeze(1)  # (B, m): n-grams inside the reference
        # expected[b, i]: expected predicted count of the reference n-gram starting at i
        prod = p_ref[:, :m, :m]
        same = tokens[:, :m].unsqueeze(2) == tokens[:, :m].unsqueeze(1)  # (B, m, m): equal n-grams at i and i'
        for k in range(1, n):
            prod = prod * p_ref[:, k : k + m, k : k + m]
            same = same & (tokens[:, k : k + m].unsqueeze(2) == tokens[:, k : k + m].unsqueeze(1))
        expected = (prod * valid.unsqueeze(2)).sum(1)  # (B, m), summed over predicted start positions j
        count = (same & valid.unsqueeze(1) & valid.unsqueeze(2)).sum(2).clamp(min=1)  # (B, m): reference count
        # each occurrence of a repeated n-gram carries 1/count of its clipped match, so they add up to one clip
        matched = (torch.minimum(expected, count.to(expected.dtype)) / count * valid).sum(1)  # (B,)
        total = (lengths - n + 1).clamp(min=1).to(expected.dtype)  # predicted = reference count (teacher forcing)
        precision = recall = matched / total
        f1s.append(2 * precision * recall / (precision + recall).clamp(min=1e-8))
        has.append(lengths >= n)
    if not f1s:
        return logits.new_zeros(())
    f1, has = torch.stack(f1s, 1), torch.stack(has, 1).to(logits.dtype)  # (B, n)
    rows = has.sum(1) > 0  # samples with at least a unigram
    if not rows.any():
        return logits.new_zeros(())
    per_sample = 1 - (f1 * has).sum(1) / has.sum(1).clamp(min=1)
    return per_sample[rows].mean()


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
