"""Decoders on toy models whose best sequences are known by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pipeline.decoding import (
    CTCPrefixScorer,
    DecodeConfig,
    apply_repetition_penalty,
    beam_search,
    ctc_best_path,
    decode,
    filter_top_k_top_p,
    greedy,
    sample,
)
from pipeline.vocab import BOS, EOS, PAD, UNK

V = 8  # 4 special tokens + glosses 4..7


def table_model(table: dict[tuple[int, ...], dict[int, float]]):
    """next_logits from a table prefix -> {token: probability}; unlisted prefixes end the sequence."""

    def next_logits(tokens: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        out = torch.full((len(tokens), V), math.log(1e-9))
        for i, seq in enumerate(tokens.tolist()):
            for tok, p in table.get(tuple(seq[1:]), {EOS: 1.0}).items():
                out[i, tok] = math.log(p)
        return out

    return next_logits


def random_model(seed: int = 0):
    """Logits that depend on the batch item, the last token and the length; EOS grows likelier with length."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(6, V, V, generator=g) * 2

    def next_logits(tokens: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        logits = w[rows, tokens[:, -1]].clone()
        logits[:, EOS] += tokens.shape[1] - 3
        return logits

    return next_logits


def strip(ids: torch.Tensor) -> list[list[int]]:
    return [[t for t in row if t != PAD] for row in ids.tolist()]


# greedy takes 4 (0.5) and then at best 0.3: p = 0.15; the best sequence starts with the less likely 5: 0.36
GARDEN_PATH = {(): {4: 0.5, 5: 0.4, 6: 0.1}, (4,): {4: 0.3, 5: 0.3, 6: 0.3, EOS: 0.1}, (5,): {6: 0.9, EOS: 0.1}}


def test_beam_search_finds_the_known_best_sequence_that_greedy_misses():
    model = table_model(GARDEN_PATH)
    assert strip(greedy(model, 1, 10))[0][0] == 4
    best = beam_search(model, 1, beam_size=3, max_len=10, length_penalty=0.0, repetition_penalty=1.0, temperature=1)
    assert strip(best) == [[5, 6, EOS]]


def test_beam_one_equals_greedy():
    # without a length penalty (which rescores finished hypotheses by length) and repetition penalty
    for seed in range(5):
        model = random_model(seed)
        g = greedy(model, 6, 12)
        b = beam_search(model, 6, beam_size=1, max_len=12, length_penalty=0.0, repetition_penalty=1.0, temperature=0.7)
        assert strip(g) == strip(b)


def test_batched_beam_search_equals_one_item_at_a_time():
    model = random_model(3)
    together = strip(beam_search(model, 6, beam_size=4, max_len=12))

    for b in range(6):

        def single(tokens, rows, b=b):
            return model(tokens, torch.full_like(rows, b))

        assert strip(beam_search(single, 1, beam_size=4, max_len=12)) == [together[b]]


def test_length_penalty_changes_the_ranking_as_defined():
    # [4 EOS]: log p = ln .5 + ln .6 = -1.20 (per token -0.60); [5 6 EOS]: ln .3 + ln .7 = -1.56 (per token -0.52)
    table = {(): {4: 0.5, 5: 0.3, 6: 0.2}, (4,): {EOS: 0.6, 4: 0.2, 6: 0.2}, (5,): {6: 0.7, EOS: 0.3}}
    model = table_model(table)
    kw = dict(beam_size=3, max_len=10, repetition_penalty=1.0, temperature=1.0)
    assert strip(beam_search(model, 1, length_penalty=0.0, **kw)) == [[4, EOS]]  # sum of log p
    assert strip(beam_search(model, 1, length_penalty=1.0, **kw)) == [[5, 6, EOS]]  # mean log p


def test_repetition_penalty_changes_the_ranking_as_defined():
    table = {(): {4: 0.9, 5: 0.1}, (4,): {4: 0.5, 5: 0.3, EOS: 0.2}}
    model = table_model(table)
    kw = dict(beam_size=2, max_len=10, length_penalty=0.0, temperature=1.0)
    assert strip(beam_search(model, 1, repetition_penalty=1.0, **kw)) == [[4, 4, EOS]]
    # ln .5 * 2.5 = -1.73 now loses to ln .3 = -1.20
    assert strip(beam_search(model, 1, repetition_penalty=2.5, **kw)) == [[4, 5, EOS]]


def test_repetition_penalty_by_hand():
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0]])
    out = apply_repetition_penalty(logits, torch.tensor([[0, 1]]), 2.0)
    torch.testing.assert_close(out, torch.tensor([[1.0, -2.0, 0.5, 3.0]]))


def test_decoders_never_emit_pad_or_bos_and_respect_max_len():
    # a model that would love to emit PAD / BOS / UNK
    def model(tokens, rows):
        logits = torch.zeros(len(tokens), V)
        logits[:, [PAD, BOS, UNK]] = 10.0
        logits[:, 5] = 1.0
        return logits

    for ids in (greedy(model, 2, 4), beam_search(model, 2, max_len=4), sample(model, 2, 4, top_k=0, top_p=1.0)):
        assert ids.shape[1] <= 4
        assert not ((ids == BOS) | (ids == UNK)).any()
        for row in ids.tolist():  # PAD only after EOS
            n = row.index(EOS) + 1 if EOS in row else len(row)
            assert PAD not in row[:n] and set(row[n:]) <= {PAD}


def test_sampling_is_seeded_and_top_k_one_is_greedy():
    model = random_model(1)
    cfg = DecodeConfig(strategy="sample", temperature=1.0, top_k=0, top_p=1.0, max_len=12, seed=7)
    a, b = decode(model, 6, cfg), decode(model, 6, cfg)
    assert strip(a) == strip(b)
    others = [strip(decode(model, 6, DecodeConfig(**{**cfg.__dict__, "seed": s}))) for s in range(8, 12)]
    assert any(o != strip(a) for o in others)
    one = decode(model, 6, DecodeConfig(strategy="sample", top_k=1, top_p=1.0, max_len=12, seed=3))
    assert strip(one) == strip(greedy(model, 6, 12))


def test_top_k_and_top_p_filtering():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isfinite(filter_top_k_top_p(logits, top_k=2)).tolist() == [[True, True, False, False]]
    # the nucleus: 0.5 then 0.3 (0.8 >= 0.7 reached), the rest dropped
    assert torch.isfinite(filter_top_k_top_p(logits, top_p=0.7)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(filter_top_k_top_p(logits, top_p=0.4)).tolist() == [[True, False, False, False]]
    assert torch.isfinite(filter_top_k_top_p(logits, top_p=0.85)).tolist() == [[True, True, True, False]]


def test_sampling_only_draws_inside_the_filtered_set():
    probs = {4: 0.4, 5: 0.3, 6: 0.2, 7: 0.1}
    model = table_model({(): probs})
    gen = torch.Generator().manual_seed(0)
    first = sample(model, 400, max_len=2, temperature=1.0, top_k=2, top_p=1.0, generator=gen)[:, 0]
    assert set(first.tolist()) == {4, 5}
    first = sample(model, 400, max_len=2, temperature=1.0, top_k=0, top_p=0.8, generator=gen)[:, 0]
    assert set(first.tolist()) == {4, 5, 6}


def test_bad_decoding_params_are_refused():
    with pytest.raises(ValueError, match="strategy"):
        DecodeConfig(strategy="nucleus")
    with pytest.raises(ValueError, match="temperature"):
        DecodeConfig(temperature=0)
    with pytest.raises(ValueError, match="ctc_weight"):
        DecodeConfig(ctc_weight=1.5)
    with pytest.raises(ValueError, match="CTC frame scores"):  # joint decoding without the CTC head's scores
        decode(random_model(0), 2, DecodeConfig(ctc_weight=0.5))


def frame_logp(labels: list[int], peak: float = 6.0) -> torch.Tensor:
    """(1, T, V) CTC log-probs whose best class at frame t is labels[t] (PAD is the blank)."""
    logits = torch.zeros(len(labels), V)
    logits[torch.arange(len(labels)), labels] = peak
    return logits.log_softmax(-1)[None]


def test_ctc_prefix_scores_are_pytorchs_ctc_likelihood_and_partition_the_prefix():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, V, generator=g) * 2
    logits[..., [BOS, UNK, EOS]] = float("-inf")  # classes that are never labels: the partition below is exact
    logp = logits.log_softmax(-1)
    lengths = torch.tensor([7, 5, 6])
    labels = torch.tensor([[4, 4, 5], [6, 5, 7], [5, 5, 5]])  # repeated glosses need a blank between them
    scorer = CTCPrefixScorer(logp, lengths)
    rows = torch.arange(3)
    r, psi_h = scorer.initial(rows)
    for step in range(3):
        psi, r_all = scorer.extend(r, labels[:, step - 1] if step else None, rows)
        glosses = psi[:, 4:]  # P(h) = P(h is the whole labelling) + sum over c of P(h + c is a prefix)
        total = torch.logsumexp(torch.cat([glosses, psi[:, EOS : EOS + 1]], 1), 1)
        torch.testing.assert_close(total, psi_h, atol=1e-4, rtol=0)
        tok = labels[:, step]
        r, psi_h = r_all[:, rows, tok].transpose(0, 1), psi[rows, tok]
    psi, _ = scorer.extend(r, labels[:, -1], rows)
    nll = F.ctc_loss(logp.transpose(0, 1), labels, lengths, torch.full((3,), 3), blank=PAD, reduction="none")
    torch.testing.assert_close(psi[:, EOS], -nll, atol=1e-4, rtol=0)


def test_ctc_best_path_merges_repeats_drops_blanks_and_stops_at_the_length():
    logp = frame_logp([PAD, 4, 4, PAD, 4, 5, 5, 6])
    assert strip(ctc_best_path(logp, torch.tensor([7]))) == [[4, 4, 5, EOS]]
    assert strip(ctc_best_path(logp, torch.tensor([8]), max_len=3)) == [[4, 4, EOS]]
    cfg = DecodeConfig(strategy="ctc")
    assert strip(decode(random_model(0), 1, cfg, ctc=CTCPrefixScorer(logp, torch.tensor([8])))) == [[4, 4, 5, 6, EOS]]


def test_joint_ctc_attention_beam_search():
    # the decoder alone prefers [4 EOS] (GARDEN_PATH-like); the frames clearly say 5 then 6
    model = table_model({(): {4: 0.6, 5: 0.3, 6: 0.1}, (4,): {EOS: 0.9, 6: 0.1}, (5,): {6: 0.5, EOS: 0.5}})
    logp = frame_logp([PAD, 5, 5, PAD, 6, 6, PAD])
    scorer = CTCPrefixScorer(logp, torch.tensor([7]))
    kw = dict(beam_size=3, max_len=10, length_penalty=0.0, repetition_penalty=1.0, temperature=1.0)
    plain = strip(beam_search(model, 1, **kw))
    assert plain == [[4, EOS]]
    assert strip(beam_search(model, 1, ctc=scorer, ctc_weight=0.0, **kw)) == plain
    assert strip(beam_search(model, 1, ctc=scorer, ctc_weight=1.0, **kw)) == [[5, 6, EOS]]
    assert strip(beam_search(model, 1, ctc=scorer, ctc_weight=0.5, **kw)) == [[5, 6, EOS]]
    # batched with another item whose frames say 4: each item reads its own frames
    both = CTCPrefixScorer(torch.cat([logp, frame_logp([PAD, 4, 4, PAD, PAD, PAD, PAD])]), torch.tensor([7, 4]))
    assert strip(beam_search(model, 2, ctc=both, ctc_weight=0.5, **kw)) == [[5, 6, EOS], [4, EOS]]
