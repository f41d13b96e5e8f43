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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from pipeline.vocab import BOS, EOS, PAD, UNK

if TYPE_CHECKING:
    from pipeline.nets.pose2gloss import Pose2Gloss

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
):
    """Dispatch on `cfg.strategy`; returns (B, <= max_len) token ids. `ctc` is needed when `cfg.uses_ctc`."""
    if cfg.uses_ctc and ctc is None:
        raise ValueError(f"decoding strategy {cfg.strategy!r} with ctc_weight {cfg.ctc_weight} needs CTC frame scores")
    if cfg.strategy == "ctc":
        return ctc_best_path(ctc.logp, ctc.lengths, cfg.max_len)
    if cfg.strategy == "greedy":
        return greedy(next_logits, batch_size, cfg.max_len, device)
    if cfg.strategy == "beam":
        return beam_search(
            next_logits, batch_size, cfg.beam_size, cfg.max_len, cfg.length_penalty, cfg.repetition_penalty,
            cfg.temperature, device, ctc if cfg.ctc_weight > 0 else None, cfg.ctc_weight,
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
