"""Decoding gloss sequences from any model that gives next-gloss logits (Table 2's inference settings).

A model is wrapped as `next_logits(tokens, rows) -> logits`: `tokens` (N, n) are N partial sequences starting with
BOS, `rows` (N,) says which batch item each sequence belongs to (so the model can pick that item's encoder memory),
and the result (N, V) scores the next gloss. Stage I, Stage II and any baseline share the decoders below:

- `greedy`: the arg-max gloss at each step;
- `beam_search`: batched beam search with temperature, a CTRL-style repetition penalty and a length penalty;
- `sample`: ancestral sampling with temperature, top-k and top-p (nucleus) filtering, seeded;
- `ctc_best_path`: the arg-max CTC label of each frame, repeats merged and blanks dropped, for a model whose
  encoder also scores glosses frame by frame (Stage I's auxiliary CTC head);
- `validation_decode`: what both training stages validate with, a Stage I model reading tracks decoded by one of
  the two above.

Beam search can also be joint CTC / attention decoding (Watanabe et al. 2017, "Hybrid CTC/attention architecture
for end-to-end speech recognition"; ESPnet's CTCPrefixScore): each extension of a hypothesis is scored by
(1 - ctc_weight) x the decoder's log-probability + ctc_weight x the gain in the CTC prefix score, so a gloss
sequence must both read well to the decoder and align monotonically with the frames.

Every decoder returns (B, <= max_len) token ids ending with EOS (unless `max_len` ran out), padded with PAD.
PAD (other than after EOS), BOS and UNK are never produced.

`beam_search` runs Stage I's decoder incrementally (`GlossDecoderSteps`, a key / value cache) and scores CTC
prefixes without a loop over frames; `beam_search_reference` is the straightforward search it reproduces
hypothesis for hypothesis (tests/test_decoding.py, bench/bench_decoding.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.vocab import BOS, EOS, PAD, UNK

if TYPE_CHECKING:
    from pipeline.nets.pose2gloss import GlossDecoder, Pose2Gloss

NextLogits = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
STRATEGIES = ("beam", "greedy", "sample", "ctc")


@dataclass
class DecodeConfig:
    """Inference settings; the defaults are Table 2's."""

    strategy: str = "beam"  # beam | greedy | sample | ctc (best path of the CTC head alone)
    beam_size: int = 5
    ctc_weight: float = 0.0  # beam search: weight of the CTC prefix score (0 = decoder only, 1 = CTC only)
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
        if not 0 <= self.ctc_weight <= 1:
            raise ValueError(f"ctc_weight must be in [0, 1], got {self.ctc_weight}")

    @property
    def uses_ctc(self) -> bool:
        return self.strategy == "ctc" or (self.strategy == "beam" and self.ctc_weight > 0)


def decode(
    next_logits: NextLogits,
    batch_size: int,
    cfg: DecodeConfig,
    device: torch.device | str = "cpu",
    ctc: CTCPrefixScorer | None = None,
    n_best: int = 0,
):
    """Dispatch on `cfg.strategy`; returns (B, <= max_len) token ids. `ctc` is needed when `cfg.uses_ctc`. With
    `n_best` (beam search only): each item's `n_best` best finished hypotheses instead (`beam_search`)."""
    if cfg.uses_ctc and ctc is None:
        raise ValueError(f"decoding strategy {cfg.strategy!r} with ctc_weight {cfg.ctc_weight} needs CTC frame scores")
    if n_best and cfg.strategy != "beam":
        raise ValueError(f"{n_best} best hypotheses need the beam search, not decoding strategy {cfg.strategy!r}")
    if cfg.strategy == "ctc":
        return ctc_best_path(ctc.logp, ctc.lengths, cfg.max_len)
    if cfg.strategy == "greedy":
        return greedy(next_logits, batch_size, cfg.max_len, device)
    if cfg.strategy == "beam":
        return beam_search(
            next_logits, batch_size, cfg.beam_size, cfg.max_len, cfg.length_penalty, cfg.repetition_penalty,
            cfg.temperature, device, ctc if cfg.ctc_weight > 0 else None, cfg.ctc_weight, n_best,
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
    next_logits: NextLogits | StepModel,
    batch_size: int,
    beam_size: int = 5,
    max_len: int = 64,
    length_penalty: float = 0.7,
    repetition_penalty: float = 2.5,
    temperature: float = 0.7,
    device: torch.device | str = "cpu",
    ctc: CTCPrefixScorer | None = None,
    ctc_weight: float = 0.0,
    n_best: int = 0,
) -> torch.Tensor | list[list[tuple[float, list[int]]]]:
    """Batched beam search; the best finished hypothesis per item by `sum log p / length ** length_penalty`, or
    with `n_best` each item's `n_best` (at most beam_size) best (that score, token ids ending with EOS unless
    `max_len` ran out), best first.

    At each step every live beam proposes its 2 x beam_size best continuations; proposals that end with EOS
    become finished hypotheses (scored with the length penalty), the best others become the next beams. An item
    stops when it has `beam_size` finished hypotheses and no live beam can still beat the worst of them (the
    bound of Hugging Face's `early_stopping=False`); beams still live at `max_len` are finished as they are.
    Log-probabilities are those of softmax(logits / temperature) after the repetition penalty. With `ctc`, each
    step's score is (1 - ctc_weight) x that log-probability + ctc_weight x the gain in CTC prefix score (joint
    CTC / attention decoding); the CTC part is never tempered or penalised.

    Decodes exactly what `beam_search_reference` does, faster: a Stage I decoder (`Pose2Gloss.next_logits_fn`, or
    any `StepModel`) runs incrementally with a key / value cache instead of re-reading every prefix, only the
    items still searching are kept (their rows compacted once an item stops), the CTC prefix scores of all
    extensions are one batched matrix product over frames (`CTCPrefixScorer.prefix_scores`) and the CTC forward
    variables are computed for the chosen extensions only, in closed form (`CTCPrefixScorer.carry`), and the beams
    are chosen on plain lists, then gathered once a step.
    """
    B, K = batch_size, beam_size
    model = as_step_model(next_logits)
    items = torch.arange(B, device=device)  # (B_live,) the items still searching; their beams are rows j*K+k
    tokens = torch.full((B * K, 1), BOS, dtype=torch.long, device=device)  # (N, n), N = B_live * K
    scores = torch.zeros(B, K, device=device)
    scores[:, 1:] = float("-inf")  # all beams start identical: expand only the first one at step 1
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]
    state = model.start(items, K)
    ctc_state = ctc.initial(items.repeat_interleave(K)) if ctc is not None else None  # (N, T, 2), (N,)
    for step in range(1, max_len + 1):
        logits, state = model.step(state, tokens)
        logits = apply_repetition_penalty(_banned(logits), tokens, repetition_penalty)
        logp = torch.log_softmax(logits / temperature, dim=-1)  # (N, V)
        if ctc is not None:
            logp, psi = _joint_scores_fast(logp, ctc, ctc_state, tokens, items, step, ctc_weight)
        V = logp.shape[-1]
        cand = (scores.reshape(-1, 1) + logp).reshape(-1, K * V)  # (B_live, K * V)
        top_scores, top_ids = cand.topk(min(2 * K, K * V), dim=-1)
        kept, src, tok, scores = _choose(top_scores, top_ids, items, tokens, finished, step, max_len, length_penalty, V)
        if not len(kept):
            break
        if ctc is not None:
            ctc_state = _carry_ctc_fast(ctc, ctc_state, psi, tokens, items[kept], src, tok, step)
        tokens = torch.cat([tokens[src], tok[:, None]], dim=1)
        items, state = items[kept], model.select(state, src, kept)
    return [hyps[:n_best] for hyps in finished] if n_best else _best_hypotheses(finished, device)


def _choose(
    top_scores: torch.Tensor, top_ids: torch.Tensor, items: torch.Tensor, tokens: torch.Tensor, finished: list,
    step: int, max_len: int, lp: float, V: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """Each live item's step on plain lists (top_scores, top_ids (B_live, 2K) of its K * V proposals): which items
    search on, `kept` (B',) positions in `items`; their new beams, row i continuing old row `src[i]` with gloss
    `tok[i]` (N' = B' * K); and their scores (B', K). An item with fewer than K live proposals fills its beams
    with a dummy (its first row, PAD, score -inf), which is never chosen again."""
    K = len(tokens) // len(items)
    prefixes = _Prefixes(tokens)
    kept, src, tok, new_scores = [], [], [], []
    for j, (b, s, c) in enumerate(zip(items.tolist(), top_scores.tolist(), top_ids.tolist())):
        chosen = _advance(s, c, prefixes, j * K, finished[b], step, max_len, lp, K, V)
        if _still_searching(chosen, finished[b], step, max_len, lp, K):
            kept.append(j)
            chosen += [(float("-inf"), 0, PAD)] * (K - len(chosen))
            new_scores.append([sc for sc, _, _ in chosen])
            src += [j * K + beam for _, beam, _ in chosen]
            tok += [t for _, _, t in chosen]
    ids = (torch.tensor(x, dtype=torch.long, device=tokens.device) for x in (kept, src, tok))
    return *ids, torch.tensor(new_scores, device=tokens.device).view(-1, K)


class _Prefixes:
    """The current beams' token lists, read from the tensor only when a hypothesis finishes (one copy a step)."""

    def __init__(self, tokens: torch.Tensor) -> None:
        self.tokens, self.rows = tokens, None

    def __getitem__(self, row: int) -> list[int]:
        if self.rows is None:
            self.rows = self.tokens.tolist()
        return self.rows[row]


def _advance(
    top_scores: list[float], top_ids: list[int], prefixes: _Prefixes, first: int, finished: list, step: int,
    max_len: int, lp: float, K: int, V: int,
) -> list[tuple[float, int, int]]:  # fmt: skip
    """One item's step, as `_Beams.advance`: take the proposals best first; one ending with EOS (or at
    `max_len`) is finished with its length penalty, the others become the next beams until K are chosen. Returns
    (score, beam, gloss) of each chosen one; `finished` is kept sorted, best first, at most K long."""
    chosen = []
    for s, c in zip(top_scores, top_ids):
        if s == float("-inf"):
            break
        beam, tok = divmod(c, V)
        if tok == EOS or step == max_len:
            finished.append((s / step**lp, [*prefixes[first + beam][1:], tok]))
            continue
        chosen.append((s, beam, tok))
        if len(chosen) == K:
            break
    finished[:] = sorted(finished, key=lambda h: -h[0])[:K]
    return chosen


def _still_searching(chosen: list, finished: list, step: int, max_len: int, lp: float, K: int) -> bool:
    """Whether an item searches on: it has live beams and, once it holds K finished hypotheses, its best live
    beam can still beat the worst of them (the best normalised score it can reach, as `beam_search_reference`)."""
    if step == max_len or not chosen:
        return False
    if len(finished) < K:
        return True
    return chosen[0][0] / (max_len if lp > 0 else step) ** lp > finished[-1][0]


def _joint_scores_fast(
    logp: torch.Tensor, ctc: CTCPrefixScorer, state: tuple, tokens: torch.Tensor, items: torch.Tensor,
    step: int, ctc_weight: float,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """`_joint_scores` from `CTCPrefixScorer.prefix_scores`: the joint scores (N, V) and psi (N, V)."""
    ctc_r, ctc_psi = state
    psi = ctc.prefix_scores(ctc_r, tokens[:, -1] if step > 1 else None, items)  # (N, V)
    prev = ctc_psi[:, None]
    gain = torch.where(torch.isfinite(prev), psi - prev, torch.full_like(psi, float("-inf")))
    # banned glosses stay -inf; at ctc_weight 1 the decoder only vetoes them (0 x -inf would be NaN)
    return torch.where(torch.isfinite(logp), (1 - ctc_weight) * logp, logp) + ctc_weight * gain, psi


def _carry_ctc_fast(
    ctc: CTCPrefixScorer, state: tuple, psi: torch.Tensor, tokens: torch.Tensor, items: torch.Tensor,
    src: torch.Tensor, tok: torch.Tensor, step: int,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """The CTC state (r (N', T, 2), psi (N',)) of the new beams, row i extending old row src[i] by tok[i];
    `items` (B',) are the new beams' batch items, K rows each."""
    last = tokens[src, -1] if step > 1 else None
    rows = items.repeat_interleave(len(src) // len(items))
    return ctc.carry(state[0][src], last, tok, rows), psi[src, tok]


class StepModel(Protocol):
    """A decoder `beam_search` can run step by step, carrying a state (a key / value cache, ...) between steps.

    The rows of a step are `items` (B,) x K beams each, item-major; `select` continues the search with the rows
    `src` (N',) of the kept items `kept` (B',) (positions in `items`), K rows per kept item."""

    def start(self, items: torch.Tensor, K: int) -> Any: ...

    def step(self, state: Any, tokens: torch.Tensor) -> tuple[torch.Tensor, Any]:  # (N, n) -> (N, V), state
        ...

    def select(self, state: Any, src: torch.Tensor, kept: torch.Tensor) -> Any: ...


class _Recompute:
    """Any `next_logits` as a `StepModel`: every step reads the whole prefixes again."""

    def __init__(self, next_logits: NextLogits) -> None:
        self.next_logits = next_logits

    def start(self, items: torch.Tensor, K: int) -> tuple[torch.Tensor, int]:
        return items, K

    def step(self, state: tuple[torch.Tensor, int], tokens: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        items, K = state
        return self.next_logits(tokens, items.repeat_interleave(K)), state

    def select(self, state: tuple[torch.Tensor, int], src: torch.Tensor, kept: torch.Tensor) -> tuple:
        return state[0][kept], state[1]


@dataclass(frozen=True)
class DecoderLogits:
    """`next_logits(tokens (N, n), rows (N,)) -> (N, V)` of a Stage I decoder over a batch's memory (what
    `Pose2Gloss.next_logits_fn` gives): the decoder re-read whole at each step, or, through `as_step_model`,
    incrementally when `GlossDecoderSteps` reproduces it."""

    decoder: nn.Module  # (tokens (N, n), memory (N, T, d), frame_pad (N, T)) -> logits (N, n, V)
    memory: torch.Tensor  # (B, T, d)
    frame_pad: torch.Tensor  # (B, T)

    def __call__(self, tokens: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return self.decoder(tokens, self.memory[rows], self.frame_pad[rows])[:, -1]


def as_step_model(next_logits: NextLogits | StepModel) -> StepModel:
    """A `StepModel` as is; a `DecoderLogits` as the incremental `GlossDecoderSteps` of its decoder, when that
    decoder is one it reproduces; any other `next_logits` re-read prefix by prefix."""
    if all(hasattr(next_logits, name) for name in ("start", "step", "select")):
        return next_logits  # type: ignore[return-value]
    if isinstance(next_logits, DecoderLogits) and GlossDecoderSteps.supports(next_logits.decoder):
        return GlossDecoderSteps(next_logits.decoder, next_logits.memory, next_logits.frame_pad)
    return _Recompute(next_logits)


class GlossDecoderSteps:
    """Stage I's `GlossDecoder` (pre-norm `nn.TransformerDecoder`, eval mode) decoded incrementally: per layer a
    cache of the self-attention keys / values of the prefix, and the cross-attention keys / values of each item's
    memory computed once, so a step costs one token per beam instead of the whole prefix; the logits equal those
    of `GlossDecoder.forward` at the last position up to float rounding (the causal mask makes earlier positions
    independent of later ones, and a beam's prefix holds no PAD to mask)."""

    def __init__(self, decoder: GlossDecoder, memory: torch.Tensor, frame_pad: torch.Tensor) -> None:
        self.decoder, d = decoder, decoder.d_model
        layers = list(decoder.layers.layers)
        self.heads = layers[0].self_attn.num_heads
        # each layer's weights read once: a step is a few dozen small kernels, so module calls would dominate
        self.weights = [_LayerWeights.of(layer, d) for layer in layers]
        self.cross = []  # per layer: keys, values (B, H, T, dh) of the memory
        for layer in layers:
            w, b = layer.multihead_attn.in_proj_weight, layer.multihead_attn.in_proj_bias
            self.cross.append(self._heads(F.linear(memory, w[d:], b[d:]), 2))  # from (B, T, 2d)
        # padded frames are never attended to: an additive mask (B, 1, 1, T); none at all without padding
        mask = torch.zeros(frame_pad.shape, device=memory.device).masked_fill(frame_pad, float("-inf"))
        self.memory_mask = mask[:, None, None] if bool(frame_pad.any()) else None
        self.out_norm = (decoder.norm.weight, decoder.norm.bias, decoder.norm.eps)
        self.codebook_t = decoder.codebook.weight.T.contiguous()  # (d, V)

    @staticmethod
    def supports(decoder: nn.Module) -> bool:
        """Whether it is the decoder this class reproduces: pre-norm layers, no final norm inside, eval mode."""
        layers = getattr(decoder, "layers", None)
        return (
            isinstance(layers, nn.TransformerDecoder) and layers.norm is None and not decoder.training
            and all(lay.norm_first and lay.self_attn.batch_first and lay.self_attn._qkv_same_embed_dim
                    and lay.multihead_attn._qkv_same_embed_dim for lay in layers.layers)
        )  # fmt: skip

    def _heads(self, x: torch.Tensor, parts: int) -> tuple[torch.Tensor, ...]:
        """(B, L, parts * d) -> `parts` tensors (B, H, L, dh)."""
        B, L, _ = x.shape
        return x.view(B, L, parts, self.heads, -1).permute(2, 0, 3, 1, 4).unbind(0)

    def start(self, items: torch.Tensor, K: int) -> dict:
        mask = self.memory_mask[items] if self.memory_mask is not None else None
        return {"K": K, "cross": [(k[items], v[items]) for k, v in self.cross], "mask": mask,
                "cache": [None] * len(self.weights)}  # fmt: skip

    def step(self, state: dict, tokens: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Logits (N, V) of the next token after `tokens` (N, n); only their last token is read."""
        dec, K, (N, n) = self.decoder, state["K"], tokens.shape
        x = F.embedding(tokens[:, -1], dec.codebook.weight) + dec.pos.weight[n - 1]  # (N, d)
        for i, w in enumerate(self.weights):
            q, k, v = self._heads(F.linear(_norm(x, w.norm1), *w.qkv)[:, None], 3)  # (N, H, 1, dh) each
            if state["cache"][i] is not None:
                k, v = (torch.cat([old, new], dim=2) for old, new in zip(state["cache"][i], (k, v)))
            state["cache"][i] = (k, v)  # (N, H, n, dh)
            x = x + _attend(q, k, v, None, w.self_out)
            q = F.linear(_norm(x, w.norm2), *w.q)  # (N, d)
            q = q.view(N // K, K, self.heads, -1).transpose(1, 2)  # (B, H, K, dh): an item's beams share its memory
            x = x + _attend(q, *state["cross"][i], state["mask"], w.cross_out)
            x = x + F.linear(w.activation(F.linear(_norm(x, w.norm3), *w.ff1)), *w.ff2)
        return _norm(x, self.out_norm) @ self.codebook_t, state

    def select(self, state: dict, src: torch.Tensor, kept: torch.Tensor) -> dict:
        state["cache"] = [(k[src], v[src]) for k, v in state["cache"]]
        state["cross"] = [(k[kept], v[kept]) for k, v in state["cross"]]
        state["mask"] = state["mask"][kept] if state["mask"] is not None else None
        return state


@dataclass
class _LayerWeights:
    """What `GlossDecoderSteps.step` reads of one `nn.TransformerDecoderLayer`: (weight, bias[, eps]) tuples."""

    norm1: tuple
    qkv: tuple
    self_out: tuple
    norm2: tuple
    q: tuple
    cross_out: tuple
    norm3: tuple
    ff1: tuple
    ff2: tuple
    activation: Callable[[torch.Tensor], torch.Tensor]

    @classmethod
    def of(cls, layer: nn.TransformerDecoderLayer, d: int) -> _LayerWeights:
        sa, ca = layer.self_attn, layer.multihead_attn
        return cls(
            norm1=(layer.norm1.weight, layer.norm1.bias, layer.norm1.eps),
            qkv=(sa.in_proj_weight, sa.in_proj_bias),
            self_out=(sa.out_proj.weight, sa.out_proj.bias),
            norm2=(layer.norm2.weight, layer.norm2.bias, layer.norm2.eps),
            q=(ca.in_proj_weight[:d], ca.in_proj_bias[:d]),
            cross_out=(ca.out_proj.weight, ca.out_proj.bias),
            norm3=(layer.norm3.weight, layer.norm3.bias, layer.norm3.eps),
            ff1=(layer.linear1.weight, layer.linear1.bias),
            ff2=(layer.linear2.weight, layer.linear2.bias),
            activation=layer.activation,
        )


def _norm(x: torch.Tensor, norm: tuple) -> torch.Tensor:
    """LayerNorm over the last dimension with (weight, bias, eps)."""
    return F.layer_norm(x, norm[0].shape, *norm)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask, out_proj: tuple) -> torch.Tensor:
    """Attention of queries q (G, H, L, dh) to k, v (G, H, S, dh), then the output projection -> (G * L, d)."""
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (G, H, L, dh)
    return F.linear(out.transpose(1, 2).flatten(0, 1).flatten(1), *out_proj)


@torch.no_grad()
def beam_search_reference(
    next_logits: NextLogits,
    batch_size: int,
    beam_size: int = 5,
    max_len: int = 64,
    length_penalty: float = 0.7,
    repetition_penalty: float = 2.5,
    temperature: float = 0.7,
    device: torch.device | str = "cpu",
    ctc: CTCPrefixScorer | None = None,
    ctc_weight: float = 0.0,
) -> torch.Tensor:
    """Batched beam search; the best finished hypothesis per item by `sum log p / length ** length_penalty`.

    At each step every live beam proposes its 2 x beam_size best continuations; proposals that end with EOS
    become finished hypotheses (scored with the length penalty), the best others become the next beams. An item
    stops when it has `beam_size` finished hypotheses and no live beam can still beat the worst of them (the
    bound of Hugging Face's `early_stopping=False`); beams still live at `max_len` are finished as they are.
    Log-probabilities are those of softmax(logits / temperature) after the repetition penalty. With `ctc`, each
    step's score is (1 - ctc_weight) x that log-probability + ctc_weight x the gain in CTC prefix score (joint
    CTC / attention decoding); the CTC part is never tempered or penalised.
    """
    B, K = batch_size, beam_size
    tokens = torch.full((B * K, 1), BOS, dtype=torch.long, device=device)
    rows = torch.arange(B, device=device).repeat_interleave(K)
    scores = torch.zeros(B, K, device=device)
    scores[:, 1:] = float("-inf")  # all beams start identical: expand only the first one at step 1
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]
    live = torch.ones(B, dtype=torch.bool, device=device)
    ctc_state = ctc.initial(rows) if ctc is not None else None  # (B*K, T, 2), (B*K,)

    def bound(best_sum: float, length: int) -> float:  # the best normalised score a live beam can still reach
        return best_sum / (max_len if length_penalty > 0 else length) ** length_penalty

    for step in range(1, max_len + 1):
        idx = live.repeat_interleave(K)  # query only the items still searching
        logits = _banned(next_logits(tokens[idx], rows[idx]))
        logits = apply_repetition_penalty(logits, tokens[idx], repetition_penalty)
        logp = torch.log_softmax(logits / temperature, dim=-1)  # (N_live, V)
        if ctc is not None:
            logp, extended = _joint_scores(logp, ctc, ctc_state, tokens, rows, idx, step, ctc_weight)
        V = logp.shape[-1]
        cand = (scores[live].reshape(-1, 1) + logp).reshape(-1, K * V)  # (B_live, K * V)
        top_scores, top_ids = cand.topk(min(2 * K, K * V), dim=-1)
        new_tokens = torch.cat([tokens, torch.full((B * K, 1), PAD, dtype=torch.long, device=device)], dim=1)
        moves: list[tuple[int, int, int]] = []  # (new beam, live row it extends, gloss): to carry the CTC state
        for j, b in enumerate(torch.nonzero(live).flatten().tolist()):
            beams = _Beams(tokens, new_tokens, scores, finished[b], b, K, V)
            chosen = beams.advance(top_scores[j].tolist(), top_ids[j].tolist(), step, max_len, length_penalty)
            moves += [(new, j * K + beam, tok) for new, beam, tok in chosen]
            finished[b] = sorted(finished[b], key=lambda h: -h[0])[:K]
            if step == max_len or not chosen:
                live[b] = False
            elif len(finished[b]) == K and bound(scores[b, 0].item(), step) <= finished[b][-1][0]:
                live[b] = False
        tokens = new_tokens
        if ctc is not None and moves:
            _carry_ctc_state(ctc_state, extended, moves, device)
        if not live.any():
            break
    return _best_hypotheses(finished, device)


def _joint_scores(
    logp: torch.Tensor, ctc: CTCPrefixScorer, state: tuple, tokens: torch.Tensor, rows: torch.Tensor,
    idx: torch.Tensor, step: int, ctc_weight: float,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:  # fmt: skip
    """(1 - ctc_weight) x the decoder's log-probabilities (N, V) + ctc_weight x each extension's gain in CTC
    prefix score; and the extended CTC state (psi (N, V), r (T, N, V, 2)) the chosen beams carry on."""
    ctc_r, ctc_psi = state
    psi, r = ctc.extend(ctc_r[idx], tokens[idx, -1] if step > 1 else None, rows[idx])  # (N, V), (T, N, V, 2)
    prev = ctc_psi[idx][:, None]
    gain = torch.where(torch.isfinite(prev), psi - prev, torch.full_like(psi, float("-inf")))
    # banned glosses stay -inf; at ctc_weight 1 the decoder only vetoes them (0 x -inf would be NaN)
    return torch.where(torch.isfinite(logp), (1 - ctc_weight) * logp, logp) + ctc_weight * gain, (psi, r)


def _carry_ctc_state(state: tuple, extended: tuple, moves: list[tuple[int, int, int]], device) -> None:
    """Each new beam takes the CTC state of the extension it came from, in place: `extend` read copies
    (ctc_r[idx]), and beams not in `dst` are dead until refilled."""
    (ctc_r, ctc_psi), (psi, r) = state, extended
    dst, src, tok = (torch.tensor(m, device=device) for m in zip(*moves))
    ctc_r[dst] = r[:, src, tok].transpose(0, 1)
    ctc_psi[dst] = psi[src, tok]


class _Beams:
    """One item's K beams during a step of `beam_search`: rows b*K .. b*K+K-1 of the token and score tensors."""

    def __init__(self, tokens, new_tokens, scores, finished, b: int, K: int, V: int) -> None:
        self.tokens, self.new_tokens, self.scores, self.finished = tokens, new_tokens, scores, finished
        self.b, self.K, self.V = b, K, V

    def advance(self, top_scores: list[float], top_ids: list[int], step: int, max_len: int, lp: float) -> list:
        """Take the best proposals in order: one ending with EOS (or at `max_len`) is finished with its length
        penalty, the others fill the next beams until K are chosen; returns (new row, old beam, gloss) of each."""
        b, K, chosen = self.b, self.K, []
        for s, c in zip(top_scores, top_ids):
            if s == float("-inf"):
                break
            beam, tok = divmod(c, self.V)
            if tok == EOS or step == max_len:
                self.finished.append((s / step**lp, [*self.tokens[b * K + beam, 1:].tolist(), tok]))
                continue
            row = b * K + len(chosen)
            self.new_tokens[row, :-1] = self.tokens[b * K + beam]
            self.new_tokens[row, -1] = tok
            self.scores[b, len(chosen)] = s
            chosen.append((row, beam, tok))
            if len(chosen) == K:
                break
        self.scores[b, len(chosen) :] = float("-inf")
        return chosen


def _best_hypotheses(finished: list[list[tuple[float, list[int]]]], device) -> torch.Tensor:
    """(B, longest) token ids of each item's best finished hypothesis, PAD after its end."""
    out = torch.full((len(finished), max(len(f[0][1]) for f in finished)), PAD, dtype=torch.long, device=device)
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


class CTCPrefixScorer:
    """CTC prefix scores of every one-gloss extension of many hypotheses at once (the forward variables of
    Watanabe et al. 2017, Algorithm 2; ESPnet's CTCPrefixScore), for joint CTC / attention beam search.

    For a prefix h, r_t^n(h) / r_t^b(h) is the log-probability that frames 1..t emit exactly h and that frame t
    is a label / a blank; psi(h + c) = log P(h + c is a prefix of the frames' labelling) and psi(h + EOS) is the
    full CTC log-likelihood of h. A gloss equal to the last one of h can only follow a blank.

    Args:
        logp: (B, T, V) log-probabilities of the CTC head per frame.
        lengths: (B,) real frames per item; later frames count as certain blanks, so they change nothing.
        blank: the blank class (Stage I uses PAD's), never a gloss.
    """

    def __init__(self, logp: torch.Tensor, lengths: torch.Tensor, blank: int = PAD, eos: int = EOS):
        self.logp, self.lengths, self.blank, self.eos = logp, lengths, blank, eos
        T = logp.shape[1]
        past = torch.arange(T, device=logp.device)[None] >= lengths[:, None]  # (B, T)
        x = logp.float().masked_fill(past[..., None], float("-inf"))
        x[..., blank] = x[..., blank].masked_fill(past, 0.0)
        self.x = x.transpose(0, 1)  # (T, B, V)

    def initial(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The empty prefix of batch items `rows` (N,): r (N, T, 2) [label, blank] and psi (N,) = log 1."""
        blanks = self.x[:, rows, self.blank].cumsum(0).T  # (N, T): all blanks so far
        r = torch.stack([torch.full_like(blanks, float("-inf")), blanks], dim=-1)
        return r, torch.zeros(len(rows), device=blanks.device)

    def extend(
        self, r_prev: torch.Tensor, last: torch.Tensor | None, rows: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores of h + c for every gloss c. r_prev (N, T, 2) of the hypotheses h, `last` (N,) their last gloss
        (None while h is empty), rows (N,) their batch items -> psi (N, V) and r (T, N, V, 2)."""
        x = self.x[:, rows]  # (T, N, V)
        T, N, V = x.shape
        r_sum = torch.logaddexp(r_prev[..., 0], r_prev[..., 1]).T  # (T, N)
        phi = r_sum[..., None].expand(T, N, V).clone()  # log-prob that h is complete before frame t + 1
        if last is not None:
            phi.scatter_(2, last.view(1, N, 1).expand(T, N, 1), r_prev[..., 1].T[..., None])
        r = torch.full((T, N, V, 2), float("-inf"), device=x.device)
        if last is None:
            r[0, ..., 0] = x[0]
        psi = r[0, ..., 0].clone()
        blank = x[..., self.blank : self.blank + 1]  # (T, N, 1)
        for t in range(1, T):
            r[t, ..., 0] = torch.logaddexp(r[t - 1, ..., 0], phi[t - 1]) + x[t]
            r[t, ..., 1] = torch.logaddexp(r[t - 1, ..., 0], r[t - 1, ..., 1]) + blank[t]
            psi = torch.logaddexp(psi, phi[t - 1] + x[t])
        psi[:, self.eos] = r_sum[-1]
        return psi, r

    @cached_property
    def _frames_exp(self) -> tuple[torch.Tensor, torch.Tensor]:
        """exp(x) of frames 1 .. T-1, scaled per item and gloss by its largest frame so it cannot underflow:
        (B, T - 1, V) and the log-scale (B, V), float64; what `prefix_scores` multiplies by."""
        x = self.x[1:].permute(1, 0, 2).double()  # (B, T - 1, V)
        scale = x.amax(1) if x.shape[1] else x.new_zeros(x.shape[0], x.shape[2])
        scale = torch.where(torch.isfinite(scale), scale, torch.zeros_like(scale))  # a class no frame can emit
        return (x - scale[:, None]).exp(), scale

    def prefix_scores(self, r_prev: torch.Tensor, last: torch.Tensor | None, items: torch.Tensor) -> torch.Tensor:
        """`extend`'s psi (N, V) alone, without its frame loop: r_prev (N, T, 2) of the hypotheses, K per batch item
        of `items` (B,), item-major; `last` (N,) their last gloss (None while empty).

        psi(h + c) = logsumexp_t phi_h[t - 1] + x_c[t] is, in probabilities, a product of (K, T - 1) by (T - 1, V)
        matrices per item: one batched matmul (scaled, float64) instead of a (T, N, V) log-sum-exp; an entry too
        small for it (a product of 0) is computed again exactly, as is h's last gloss, whose phi is r^b."""
        B = len(items)
        K, T = len(r_prev) // B, r_prev.shape[1]
        r = r_prev.view(B, K, T, 2)
        r_sum = torch.logaddexp(r[..., 0], r[..., 1])  # (B, K, T)
        phi = r_sum[..., :-1].double()  # (B, K, T - 1): h complete at frame t, c at t + 1
        ex, scale = (e[items] for e in self._frames_exp)  # (B, T - 1, V), (B, V)
        top = phi.amax(-1, keepdim=True) if T > 1 else phi.new_zeros(B, K, 1)
        top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))  # (B, K, 1)
        prob = torch.bmm((phi - top).exp(), ex)  # (B, K, V)
        psi = prob.log() + top + scale[:, None]
        x = self.x[1:, items].permute(1, 0, 2)  # (B, T - 1, V) log-probabilities
        if (under := (prob == 0).nonzero()).numel():  # (M, 3): b, k, c
            b, k, c = under.unbind(1)
            psi[b, k, c] = torch.logsumexp(phi[b, k] + x[b, :, c], dim=-1).double()
        if last is not None:  # h's last gloss again only after a blank
            idx = last.view(B, K, 1).expand(B, K, T - 1)  # (B, K, T - 1)
            again = r[..., :-1, 1] + x.gather(2, idx.transpose(1, 2)).transpose(1, 2)  # (B, K, T - 1)
            psi.scatter_(2, last.view(B, K, 1), torch.logsumexp(again, -1, keepdim=True).double())
        psi = psi.to(self.x.dtype)
        if last is None:  # the empty prefix: c may also open at frame 0
            psi = torch.logaddexp(psi, self.x[0, items][:, None])
        psi = psi.reshape(B * K, -1)
        psi[:, self.eos] = r_sum[..., -1].reshape(B * K)
        return psi

    def carry(
        self, r_prev: torch.Tensor, last: torch.Tensor | None, tok: torch.Tensor, rows: torch.Tensor
    ) -> torch.Tensor:
        """`extend`'s r of chosen extensions only: r (M, T, 2) of h_i + tok_i, from r_prev (M, T, 2) of h_i, `last`
        (M,) h_i's last gloss (None while empty) and `rows` (M,) their batch items. Each forward variable is a
        first-order linear recursion in probabilities, solved in closed form (`_scan`) instead of frame by frame."""
        x = self.x[:, rows, tok].T.double()  # (M, T); float64: the closed form subtracts running sums
        blank = self.x[:, rows, self.blank].T.double()  # (M, T)
        r_prev = r_prev.double()
        r_sum = torch.logaddexp(r_prev[..., 0], r_prev[..., 1])  # (M, T)
        phi = r_sum if last is None else torch.where((last == tok)[:, None], r_prev[..., 1], r_sum)
        none = torch.full_like(x[:, 0], float("-inf"))
        r_n = _scan(x[:, 0] if last is None else none, phi, x)
        r_b = _scan(none, r_n, blank)
        return torch.stack([r_n, r_b], dim=-1).to(self.x.dtype)


IMPOSSIBLE = -1e10  # a log-probability of -inf inside `_scan`; below IMPOSSIBLE / 10 a result is -inf again


def _scan(y0: torch.Tensor, u: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """y[0] = y0, y[t] = logaddexp(y[t - 1], u[t - 1]) + z[t]: (M,), (M, T), (M, T) -> y (M, T), float64.

    In probabilities Y[t] = (Y[t - 1] + U[t - 1]) Z[t], so with Zc[t] = Z[1] ... Z[t],
    Y[t] = Zc[t] (Y[0] + sum_{s < t} U[s] / Zc[s]): a cumulative sum and a log-cumsum-exp. A -inf in z (a frame
    that cannot emit, e.g. past an item's length) would make Zc 0, so it is clamped to IMPOSSIBLE (any path
    through it falls below IMPOSSIBLE / 10, far under any real log-probability) and such results are -inf again."""
    z = z.clamp(min=IMPOSSIBLE)
    zc = torch.cat([torch.zeros_like(z[:, :1]), z[:, 1:].cumsum(1)], dim=1)  # (M, T): log Zc, Zc[0] = 1
    a = torch.cat([y0[:, None], u[:, :-1] - zc[:, :-1]], dim=1)  # (M, T)
    y = zc + torch.logcumsumexp(a, dim=1)
    return y.masked_fill(y < IMPOSSIBLE / 10, float("-inf"))


def ctc_best_path(logp: torch.Tensor, lengths: torch.Tensor, max_len: int = 64, blank: int = PAD) -> torch.Tensor:
    """Best-path CTC decoding: each real frame's arg-max class, repeats merged, blanks dropped, then EOS.
    logp (B, T, V), lengths (B,) -> (B, <= max_len) token ids padded with PAD."""
    seqs = []
    for row, n in zip(logp.argmax(-1), lengths.tolist()):
        ids = torch.unique_consecutive(row[:n]).tolist()
        seqs.append([i for i in ids if i not in (blank, BOS, EOS, UNK)][: max_len - 1] + [EOS])
    out = torch.full((len(seqs), max(len(q) for q in seqs)), PAD, dtype=torch.long, device=logp.device)
    for b, q in enumerate(seqs):
        out[b, : len(q)] = torch.tensor(q, dtype=torch.long)
    return out


@torch.no_grad()
def validation_decode(
    model: Pose2Gloss,
    features: torch.Tensor,
    track_mask: torch.Tensor,
    frame_pad: torch.Tensor,
    best_path: bool = False,
    seed: int = 0,
) -> torch.Tensor:
    """Gloss ids (B, <= max_len) of Stage I (in eval mode) reading tracks (B, T, 1959), for validation while
    training (`evaluate` runs the joint beam search): greedy decoding through the DDIM reverse process and the
    decoder, the paper's path; with `best_path` (and a trained CTC head) the best path of the CTC head instead, one
    encoder pass: a twentieth of the time, but a poorer guide to choosing a Stage I checkpoint (docs/POSE2GLOSS.md),
    so only Stage II validates with it."""
    max_len = model.cfg.max_len
    if best_path and model.ctc_trained:
        f, _ = model.encode(features, track_mask)
        return ctc_best_path(model.ctc_head(f).float().log_softmax(-1), (~frame_pad).sum(1), max_len)
    g = torch.Generator(device=features.device).manual_seed(seed)
    memory, _ = model.inference(features, track_mask, frame_pad, g)
    return greedy(model.next_logits_fn(memory, frame_pad), len(features), max_len, features.device)
