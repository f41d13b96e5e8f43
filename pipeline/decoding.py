"""Decoding gloss sequences from any model that gives next-gloss logits (Table 2's inference settings).

A model is wrapped as `next_logits(tokens, rows) -> logits`: `tokens` (N, n) are N partial sequences starting with
BOS, `rows` (N,) says which batch item each sequence belongs to (so the model can pick that item's encoder memory),
and the result (N, V) scores the next gloss. Stage I, Stage II and any baseline share the decoders below:

- `greedy`: the arg-max gloss at each step;
- `beam_search`: batched beam search with temperature, a CTRL-style repetition penalty and a length penalty;
- `sample`: ancestral sampling with temperature, top-k and top-p (nucleus) filtering, seeded.

Every decoder returns (B, <= max_len) token ids ending with EOS (unless `max_len` ran out), padded with PAD.
PAD (other than after EOS), BOS and UNK are never produced.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from pipeline.vocab import BOS, EOS, PAD, UNK

NextLogits = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
STRATEGIES = ("beam", "greedy", "sample")


@dataclass
class DecodeConfig:
    """Inference settings; the defaults are Table 2's."""

    strategy: str = "beam"  # beam | greedy | sample
    beam_size: int = 5
    length_penalty: float = 0.7  # beam score = sum of log-probs / length ** length_penalty
    repetition_penalty: float = 2.5  # > 1 discourages glosses already in the hypothesis (beam search)
    temperature: float = 0.7  # logits / temperature before the softmax (beam search and sampling)
    top_k: int = 50  # sampling: keep the k most likely glosses (0 = all)
    top_p: float = 0.92  # sampling: keep the smallest set with this much probability (1 = all)
    max_len: int = 64  # generated tokens, EOS included
    seed: int = 0  # sampling

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"decoding strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if self.beam_size < 1 or self.max_len < 1:
            raise ValueError("beam_size and max_len must be at least 1")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


def decode(next_logits: NextLogits, batch_size: int, cfg: DecodeConfig, device: torch.device | str = "cpu"):
    """Dispatch on `cfg.strategy`; returns (B, <= max_len) token ids."""
    if cfg.strategy == "greedy":
        return greedy(next_logits, batch_size, cfg.max_len, device)
    if cfg.strategy == "beam":
        return beam_search(
            next_logits, batch_size, cfg.beam_size, cfg.max_len, cfg.length_penalty, cfg.repetition_penalty,
            cfg.temperature, device,
        )  # fmt: skip
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    return sample(next_logits, batch_size, cfg.max_len, cfg.temperature, cfg.top_k, cfg.top_p, gen, device)


def _banned(logits: torch.Tensor) -> torch.Tensor:
    logits = logits.float().clone()
    logits[:, [PAD, BOS, UNK]] = float("-inf")
    return logits


def apply_repetition_penalty(logits: torch.Tensor, tokens: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL (Keskar et al. 2019) as in Hugging Face: a gloss already in the sequence has its logit divided by
    `penalty` when positive and multiplied by it when negative. (N, V), (N, n) -> (N, V)."""
    if penalty == 1.0:
        return logits
    seen = torch.gather(logits, 1, tokens)
    seen = torch.where(seen > 0, seen / penalty, seen * penalty)
    return logits.scatter(1, tokens, seen)


def _token_by_token(
    next_logits: NextLogits,
    batch_size: int,
    max_len: int,
    choose: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device | str,
) -> torch.Tensor:
    """The left-to-right loop greedy decoding and sampling share: `choose` maps the (B, V) logits (PAD, BOS and
    UNK banned) to each sequence's next token; a finished sequence is padded."""
    tokens = torch.full((batch_size, 1), BOS, dtype=torch.long, device=device)
    rows = torch.arange(batch_size, device=device)
    done = torch.zeros(batch_size, dtype=torch.bool, device=device)
    for _ in range(max_len):
        nxt = choose(_banned(next_logits(tokens, rows)))
        nxt = torch.where(done, torch.full_like(nxt, PAD), nxt)
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)
        done |= nxt == EOS
        if done.all():
            break
    return tokens[:, 1:]


@torch.no_grad()
def greedy(next_logits: NextLogits, batch_size: int, max_len: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The arg-max gloss at each step until every sequence has emitted EOS."""
    return _token_by_token(next_logits, batch_size, max_len, lambda logits: logits.argmax(-1), device)


@torch.no_grad()
def beam_search(
    next_logits: NextLogits,
    batch_size: int,
    beam_size: int = 5,
    max_len: int = 64,
    length_penalty: float = 0.7,
    repetition_penalty: float = 2.5,
    temperature: float = 0.7,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Batched beam search; the best finished hypothesis per item by `sum log p / length ** length_penalty`.

    At each step every live beam proposes its 2 x beam_size best continuations; proposals that end with EOS
    become finished hypotheses (scored with the length penalty), the best others become the next beams. An item
    stops when it has `beam_size` finished hypotheses and no live beam can still beat the worst of them (the
    bound of Hugging Face's `early_stopping=False`); beams still live at `max_len` are finished as they are.
    Log-probabilities are those of softmax(logits / temperature) after the repetition penalty.
    """
    B, K = batch_size, beam_size
    tokens = torch.full((B * K, 1), BOS, dtype=torch.long, device=device)
    rows = torch.arange(B, device=device).repeat_interleave(K)
    scores = torch.zeros(B, K, device=device)
    scores[:, 1:] = float("-inf")  # all beams start identical: expand only the first one at step 1
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]
    live = torch.ones(B, dtype=torch.bool, device=device)

    def bound(best_sum: float, length: int) -> float:  # the best normalised score a live beam can still reach
        return best_sum / (max_len if length_penalty > 0 else length) ** length_penalty

    for step in range(1, max_len + 1):
        idx = live.repeat_interleave(K)  # query only the items still searching
        logits = _banned(next_logits(tokens[idx], rows[idx]))
        logits = apply_repetition_penalty(logits, tokens[idx], repetition_penalty)
        logp = torch.log_softmax(logits / temperature, dim=-1)  # (N_live, V)
        V = logp.shape[-1]
        cand = (scores[live].reshape(-1, 1) + logp).reshape(-1, K * V)  # (B_live, K * V)
        top_scores, top_ids = cand.topk(min(2 * K, K * V), dim=-1)
        new_tokens = tokens.clone()
        new_tokens = torch.cat([new_tokens, torch.full((B * K, 1), PAD, dtype=torch.long, device=device)], dim=1)
        for j, b in enumerate(torch.nonzero(live).flatten().tolist()):
            chosen = 0
            for s, c in zip(top_scores[j].tolist(), top_ids[j].tolist()):
                if s == float("-inf"):
                    break
                beam, tok = divmod(c, V)
                prefix = tokens[b * K + beam, 1:].tolist()
                if tok == EOS or step == max_len:
                    finished[b].append((s / step**length_penalty, [*prefix, tok]))
                    continue
                new_tokens[b * K + chosen, :-1] = tokens[b * K + beam]
                new_tokens[b * K + chosen, -1] = tok
                scores[b, chosen] = s
                chosen += 1
                if chosen == K:
                    break
            scores[b, chosen:] = float("-inf")
            finished[b] = sorted(finished[b], key=lambda h: -h[0])[:K]
            if step == max_len or chosen == 0:
                live[b] = False
            elif len(finished[b]) == K and bound(scores[b, 0].item(), step) <= finished[b][-1][0]:
                live[b] = False
        tokens = new_tokens
        if not live.any():
            break
    out = torch.full((B, max(len(f[0][1]) for f in finished)), PAD, dtype=torch.long, device=device)
    for b, hyps in enumerate(finished):
        best = hyps[0][1]
        out[b, : len(best)] = torch.tensor(best, dtype=torch.long, device=device)
    return out


@torch.no_grad()
def sample(
    next_logits: NextLogits,
    batch_size: int,
    max_len: int = 64,
    temperature: float = 0.7,
    top_k: int = 50,
    top_p: float = 0.92,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Ancestral sampling from softmax(logits / temperature) restricted to the top-k glosses and then to the
    smallest set whose probability reaches top_p (the most likely gloss always stays)."""

    def choose(logits: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(filter_top_k_top_p(logits / temperature, top_k, top_p), -1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)

    return _token_by_token(next_logits, batch_size, max_len, choose, device)


def filter_top_k_top_p(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Set to -inf every logit outside the top-k and outside the top-p nucleus. (N, V) -> (N, V)."""
    logits = logits.clone()
    if 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits[logits < kth] = float("-inf")
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cum = torch.softmax(sorted_logits, -1).cumsum(-1)
        drop = cum - torch.softmax(sorted_logits, -1) >= top_p  # mass before this gloss already reaches top_p
        drop[:, 0] = False
        logits[torch.zeros_like(drop).scatter(1, order, drop)] = float("-inf")
    return logits
