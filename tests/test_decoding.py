"""Decoders on toy models whose best sequences are known by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pipeline.decoding import (
    CTCPrefixScorer,
    DecodeConfig,
    GlossDecoderSteps,
    apply_repetition_penalty,
    as_step_model,
    beam_search,
    beam_search_reference,
    ctc_best_path,
    decode,
    filter_top_k_top_p,
    greedy,
    sample,
)
from pipeline.nets.pose2gloss import Pose2Gloss, Pose2GlossConfig
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


# The fast beam search (incremental decoder, compacted items, closed-form CTC prefix scores) against the
# straightforward reference it replaced: the same hypotheses, whatever the settings.

SETTINGS = [  # beam_size, max_len, length_penalty, repetition_penalty, temperature
    (1, 12, 0.0, 1.0, 0.7), (3, 12, 0.7, 2.5, 0.7), (5, 12, 1.0, 1.0, 1.0), (5, 4, 0.7, 2.5, 0.7),
    (4, 12, 0.0, 2.5, 1.3),
]  # fmt: skip


def random_frames(B: int, T: int, seed: int, peak: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, V) CTC log-probs (the blank likely) and lengths (B,) of which some are shorter than T."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, V, generator=g) * peak
    logits[..., PAD] += 2.0
    lengths = torch.randint(T // 2, T + 1, (B,), generator=g)
    lengths[0] = T
    return logits.log_softmax(-1), lengths


def both(model, B: int, setting: tuple, ctc=None, ctc_weight: float = 0.0) -> tuple[list, list]:
    K, max_len, lp, rp, temp = setting
    kw = dict(beam_size=K, max_len=max_len, length_penalty=lp, repetition_penalty=rp, temperature=temp)
    fast = beam_search(model, B, ctc=ctc, ctc_weight=ctc_weight, **kw)
    return strip(fast), strip(beam_search_reference(model, B, ctc=ctc, ctc_weight=ctc_weight, **kw))


@pytest.mark.parametrize("setting", SETTINGS)
def test_fast_beam_search_equals_the_reference(setting):
    for seed in range(4):
        fast, ref = both(random_model(seed), 6, setting)
        assert fast == ref


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("ctc_weight", [0.3, 0.5, 1.0])
def test_fast_joint_ctc_attention_beam_search_equals_the_reference(setting, ctc_weight):
    for seed in range(3):
        logp, lengths = random_frames(6, 9, seed)
        fast, ref = both(random_model(seed), 6, setting, CTCPrefixScorer(logp, lengths), ctc_weight)
        assert fast == ref


def test_fast_known_answers_with_ctc_and_penalties():
    # the hand-checked cases above, through the reference as well: both find the known answer
    model = table_model({(): {4: 0.6, 5: 0.3, 6: 0.1}, (4,): {EOS: 0.9, 6: 0.1}, (5,): {6: 0.5, EOS: 0.5}})
    scorer = CTCPrefixScorer(frame_logp([PAD, 5, 5, PAD, 6, 6, PAD]), torch.tensor([7]))
    assert both(model, 1, (3, 10, 0.0, 1.0, 1.0), scorer, 0.5) == ([[5, 6, EOS]], [[5, 6, EOS]])
    model = table_model({(): {4: 0.9, 5: 0.1}, (4,): {4: 0.5, 5: 0.3, EOS: 0.2}})
    assert both(model, 1, (2, 10, 0.0, 2.5, 1.0)) == ([[4, 5, EOS]], [[4, 5, EOS]])
    model = table_model({(): {4: 0.5, 5: 0.3, 6: 0.2}, (4,): {EOS: 0.6, 4: 0.2, 6: 0.2}, (5,): {6: 0.7, EOS: 0.3}})
    assert both(model, 1, (3, 10, 1.0, 1.0, 1.0)) == ([[5, 6, EOS]], [[5, 6, EOS]])


def test_fast_joint_beam_search_batched_equals_one_item_at_a_time():
    model, (logp, lengths) = random_model(5), random_frames(6, 10, 5)
    kw = dict(beam_size=4, max_len=12, ctc_weight=0.5)
    together = strip(beam_search(model, 6, ctc=CTCPrefixScorer(logp, lengths), **kw))
    for b in range(6):

        def single(tokens, rows, b=b):
            return model(tokens, torch.full_like(rows, b))

        n = int(lengths[b])  # alone, the item has no padded frames
        scorer = CTCPrefixScorer(logp[b : b + 1, :n], lengths[b : b + 1])
        assert strip(beam_search(single, 1, ctc=scorer, **kw)) == [together[b]]


@pytest.mark.parametrize("spread", [3.0, 300.0])  # 300: log-probs of -1000s, beyond a plain product's range
def test_ctc_prefix_scores_and_carry_equal_extend(spread):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 8, V, generator=g) * spread
    logits[..., [BOS, UNK]] = float("-inf")  # classes no frame can emit
    scorer = CTCPrefixScorer(logits.log_softmax(-1), torch.tensor([8, 5, 7]))
    items, K = torch.arange(3), 2
    rows = items.repeat_interleave(K)
    r, _ = scorer.initial(rows)
    last = None
    for tok in ([4, 5, 6, 4, 7, 7], [4, 4, 6, 5, 7, 4], [5, 6, 6, 4, 4, 4]):
        psi, r_all = scorer.extend(r, last, rows)
        torch.testing.assert_close(scorer.prefix_scores(r, last, items), psi, atol=1e-4, rtol=1e-6)
        tok = torch.tensor(tok)
        new = scorer.carry(r, last, tok, rows)  # each row extended by its own gloss
        torch.testing.assert_close(new, r_all[:, torch.arange(6), tok].transpose(0, 1), atol=1e-4, rtol=1e-6)
        r, last = new, tok


def tiny_stage1(seed: int = 0) -> Pose2Gloss:
    """A small Stage I model in eval mode with decisive (not near-uniform) random decoder logits."""
    torch.manual_seed(seed)
    cfg = Pose2GlossConfig(vocab_size=V, d_track=8, unified_dim=16, d_model=32, n_decoder_layers=2,
                           n_decoder_heads=4, max_len=12, diffusion=False)  # fmt: skip
    model = Pose2Gloss(cfg).eval()
    with torch.no_grad():
        model.decoder.codebook.weight.normal_(0, 1.0)
    return model


def test_incremental_decoder_gives_the_full_decoders_logits():
    model = tiny_stage1()
    memory, pad = torch.randn(2, 7, 32), torch.zeros(2, 7, dtype=torch.bool)
    pad[1, 5:] = True
    K = 3
    steps = as_step_model(model.next_logits_fn(memory, pad))
    assert isinstance(steps, GlossDecoderSteps)
    tokens = torch.tensor([[BOS, 4, 6, 5, 7], [BOS, 5, 5, 4, 6], [BOS, 7, 4, 4, 5]] * 2)  # (B * K, n)
    state = steps.start(torch.arange(2), K)
    with torch.no_grad():
        full = model.decoder(tokens, memory.repeat_interleave(K, 0), pad.repeat_interleave(K, 0))  # (N, n, V)
        for n in range(1, tokens.shape[1] + 1):
            logits, state = steps.step(state, tokens[:, :n])
            torch.testing.assert_close(logits, full[:, n - 1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("ctc_weight", [0.0, 0.5])
def test_fast_beam_search_on_a_stage1_decoder_equals_the_reference(ctc_weight):
    model = tiny_stage1(1)
    memory, pad = torch.randn(4, 9, 32), torch.zeros(4, 9, dtype=torch.bool)
    pad[2, 6:] = True
    logp, _ = random_frames(4, 9, 1)
    scorer = CTCPrefixScorer(logp, (~pad).sum(1))
    for setting in SETTINGS:
        fast, ref = both(model.next_logits_fn(memory, pad), 4, setting, scorer, ctc_weight)
        assert fast == ref


def test_a_decoder_in_training_mode_is_read_prefix_by_prefix():
    model = tiny_stage1().train()  # dropout: the cache would not reproduce it, so the generic path
    assert not isinstance(as_step_model(model.next_logits_fn(torch.randn(1, 3, 32), torch.zeros(1, 3).bool())),
                          GlossDecoderSteps)  # fmt: skip


def test_n_best_gives_the_finished_hypotheses_best_first_with_their_scores():
    model = table_model(GARDEN_PATH)
    kw = dict(beam_size=3, max_len=10, length_penalty=0.0, repetition_penalty=1.0, temperature=1.0)
    hyps = beam_search(model, 1, n_best=2, **kw)[0]
    # length_penalty 0: the score is the sum of log p; [4 4] and [4 6] (0.5 x 0.3) then end for sure
    assert [ids for _, ids in hyps] == [[5, 6, EOS], [4, 4, EOS]]
    assert [s for s, _ in hyps] == pytest.approx([math.log(0.4 * 0.9), math.log(0.5 * 0.3)], abs=1e-5)
    assert strip(beam_search(model, 1, **kw)) == [hyps[0][1]]
    cfg = DecodeConfig(**kw)
    assert decode(model, 1, cfg, n_best=3)[0][:2] == hyps
    with pytest.raises(ValueError, match="beam search"):
        decode(model, 1, DecodeConfig(strategy="greedy"), n_best=2)
