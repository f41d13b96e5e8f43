"""Metrics against hand-computed cases (Section 5.1 definitions in pipeline/scoring.py)."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline import scoring
from pipeline.vocab import EOS, PAD

ASLLRP = "#IF POSS-1p DATE/DESSERT EACH+ONE part:indef"


def test_identical_sequences_score_perfectly_including_asllrp_punctuation():
    assert scoring.sentence_bleu(ASLLRP, ASLLRP) == pytest.approx(100)
    assert scoring.wer([ASLLRP], [ASLLRP])["wer"] == 0
    # a short hypothesis is scored on the n-gram orders it has (auto_reweigh): 3 glosses, all right
    assert scoring.sentence_bleu("A B C", "A B C") == pytest.approx(100)


def test_punctuated_glosses_are_single_tokens():
    # if '#IF' or 'DATE/DESSERT' were split, these would share sub-tokens and score above zero
    assert scoring.wer(["#IF DATE/DESSERT"], ["IF DATE"])["substitutions"] == 2
    assert scoring.sentence_bleu("EACH+ONE", "EACH ONE") == 0
    assert scoring.wer(["POSS-1p part:indef"], ["POSS 1p part indef"])["wer"] == pytest.approx(200)


def test_wer_counts_by_hand():
    refs = ["A B C D", "E F"]
    hyps = ["A X C", "E F G"]  # 1 substitution, 1 deletion; 1 insertion: 3 errors / 6 reference glosses
    out = scoring.wer(refs, hyps)
    assert (out["substitutions"], out["deletions"], out["insertions"], out["hits"]) == (1, 1, 1, 4)
    assert out["wer"] == pytest.approx(50)
    assert out["reference_glosses"] == 6


def test_wer_with_empty_hypotheses_and_references():
    assert scoring.wer(["A B", "C"], ["", "C"])["wer"] == pytest.approx(200 / 3)  # two deletions
    out = scoring.wer(["A B", ""], ["A B", "X Y"])  # an empty reference: its glosses are insertions
    assert out["insertions"] == 2 and out["wer"] == pytest.approx(100)
    with pytest.raises(ValueError, match="undefined"):
        scoring.wer(["", ""], ["A", ""])
    with pytest.raises(ValueError, match="references"):
        scoring.wer(["A"], [])


def test_sentence_bleu_by_hand():
    # ref A B C D E, hyp A B C D: p1..p4 = 1, BP = exp(1 - 5/4)
    assert scoring.sentence_bleu("A B C D E", "A B C D") == pytest.approx(100 * math.exp(1 - 5 / 4))
    # ref A B C D, hyp A B X D: p1 = 3/4, p2 = 1/3, p3 = 0 -> 0.1/2 (method 1), p4 = 0 -> 0.1/1; BP = 1
    expected = 100 * math.exp((math.log(3 / 4) + math.log(1 / 3) + math.log(0.05) + math.log(0.1)) / 4)
    assert scoring.sentence_bleu("A B C D", "A B X D") == pytest.approx(expected)
    # BLEU-1 (Best's unit): unigram precision 3/4, no brevity penalty
    assert scoring.sentence_bleu("A B C D", "A B X D", scoring.BLEU1) == pytest.approx(75)


def test_bleu_edge_cases():
    assert scoring.sentence_bleu("A B", "") == 0
    assert scoring.sentence_bleu("", "") == 100
    assert scoring.sentence_bleu("", "A") == 0
    assert scoring.bleu([], []) == 0
    assert scoring.corpus_bleu(["A B"], [""]) == 0


def test_average_corpus_bleu_and_best():
    refs = ["A B C D", "E F G H"]
    hyps = ["A B C D", "X Y Z W"]
    assert scoring.bleu(refs, hyps) == pytest.approx(50, abs=1e-6)
    assert scoring.best(refs, hyps) == pytest.approx(100)
    assert scoring.best(["A B C D"], ["A X"]) == pytest.approx(100 * 0.5 * math.exp(1 - 4 / 2))
    # corpus BLEU pools counts: 4 + 0 matching unigrams of 8, and so on; it is not the mean of sentence BLEUs
    pooled = scoring.corpus_bleu(refs, hyps)
    p = [4 / 8, 3 / 6, 2 / 4, 1 / 2]
    assert pooled == pytest.approx(100 * math.exp(sum(map(math.log, p)) / 4))


def test_topk_accuracy_teacher_forced():
    # V = 6; targets [4, 5, EOS, PAD]: only the two glosses count
    logits = torch.tensor(
        [[[0, 0, 0, 0, 9, 1], [0, 0, 0, 0, 5, 3], [0, 0, 9, 0, 0, 0], [9, 0, 0, 0, 0, 0]]], dtype=torch.float
    )
    targets = torch.tensor([[4, 5, EOS, PAD]])
    assert scoring.topk_hits(logits, targets, 1) == (1, 2)  # 4 is top-1; 5 is second at step 2
    assert scoring.topk_accuracy(logits, targets, 1) == pytest.approx(50)
    assert scoring.topk_accuracy(logits, targets, 2) == pytest.approx(100)
    assert scoring.topk_accuracy(logits, torch.full((1, 4), PAD), 5) == 0
