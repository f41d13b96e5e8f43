"""Decoding gloss sequences from any model that gives next-gloss logits.

`next_logits(tokens (B, n)) -> (B, V)` is all a decoder needs, so Stage I, Stage II and baselines share it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from pipeline.vocab import BOS, EOS, PAD

NextLogits = Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def greedy(next_logits: NextLogits, batch_size: int, max_len: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(B, <= max_len) token ids: the arg-max gloss at each step until every sequence has emitted EOS.

    Special tokens other than EOS are never chosen; after EOS a sequence is padded.
    """
    tokens = torch.full((batch_size, 1), BOS, dtype=torch.long, device=device)
    done = torch.zeros(batch_size, dtype=torch.bool, device=device)
    for _ in range(max_len):
        logits = next_logits(tokens).clone()
        logits[:, [PAD, BOS]] = float("-inf")
        nxt = logits.argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, PAD), nxt)
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)
        done |= nxt == EOS
        if done.all():
            break
    return tokens[:, 1:]
