"""The paper's recognition metrics (Section 5.1), each defined exactly once; the README states the definitions.

Gloss strings are tokenised on whitespace only (`pipeline.vocab.tokenize`), so ASLLRP glosses such as `#IF`,
`DATE/DESSERT`, `EACH+ONE`, `POSS-1p` and `part:indef` are single tokens, never split on punctuation.

- `sentence_bleu`: NLTK sentence BLEU-4 (uniform weights, brevity penalty) with Chen & Cherry smoothing
  method 1 (epsilon 0.1 for an n-gram order without matches) and `auto_reweigh` (a hypothesis shorter than 4
  glosses is scored on the orders it has), x 100. An empty hypothesis scores 0; an empty reference scores 100
  against an empty hypothesis and 0 otherwise.
- `bleu`: the mean of `sentence_bleu` over the test samples (the paper's "averaged over test samples");
  `corpus_bleu` is NLTK's corpus-level BLEU with the same settings (pooled n-gram counts), x 100.
- `best`: the highest sentence BLEU-1 (unigram precision x brevity penalty) over the test samples, x 100.
- `wer`: corpus-level word error rate from jiwer, (S + D + I) / N x 100 with N the number of reference glosses.
- `topk_accuracy`: the share of reference tokens that are among the model's k highest-scoring glosses at their
  teacher-forced step (continuous recognition), x 100; for isolated signs this is the usual top-k accuracy of
  the first (only) gloss, and Top-1 is k = 1.
"""

from __future__ import annotations

import jiwer
import torch
from nltk.translate import bleu_score as nltk_bleu

from pipeline.vocab import EOS, PAD, tokenize

_SMOOTHING = nltk_bleu.SmoothingFunction().method1
BLEU4 = (0.25, 0.25, 0.25, 0.25)
BLEU1 = (1.0,)


def sentence_bleu(reference: str, hypothesis: str, weights: tuple[float, ...] = BLEU4) -> float:
    ref, hyp = tokenize(reference), tokenize(hypothesis)
    if not ref:
        return 100.0 if not hyp else 0.0
    if not hyp:
        return 0.0
    return 100 * nltk_bleu.sentence_bleu([ref], hyp, weights, smoothing_function=_SMOOTHING, auto_reweigh=True)


def bleu(references: list[str], hypotheses: list[str]) -> float:
    _check(references, hypotheses)
    return sum(map(sentence_bleu, references, hypotheses)) / len(references) if references else 0.0


def corpus_bleu(references: list[str], hypotheses: list[str]) -> float:
    _check(references, hypotheses)
    pairs = [(tokenize(r), tokenize(h)) for r, h in zip(references, hypotheses)]
    if not any(h for _, h in pairs) or not any(r for r, _ in pairs):
        return 0.0
    refs, hyps = [[r] for r, _ in pairs], [h for _, h in pairs]
    return 100 * nltk_bleu.corpus_bleu(refs, hyps, BLEU4, smoothing_function=_SMOOTHING, auto_reweigh=True)


def best(references: list[str], hypotheses: list[str]) -> float:
    _check(references, hypotheses)
    return max((sentence_bleu(r, h, BLEU1) for r, h in zip(references, hypotheses)), default=0.0)


def wer(references: list[str], hypotheses: list[str]) -> dict[str, float]:
    """{"wer", "substitutions", "deletions", "insertions", "hits", "reference_glosses"}; WER x 100."""
    _check(references, hypotheses)
    n_ref = sum(len(tokenize(r)) for r in references)
    if n_ref == 0:  # corpus-level WER divides by the number of reference glosses
        raise ValueError("WER is undefined when every reference is empty")
    # jiwer's words are whitespace-separated: the same tokens as `tokenize` after joining with single spaces
    out = jiwer.process_words([" ".join(tokenize(r)) for r in references], [" ".join(tokenize(h)) for h in hypotheses])
    return {
        "wer": 100 * (out.substitutions + out.deletions + out.insertions) / n_ref,
        "substitutions": out.substitutions,
        "deletions": out.deletions,
        "insertions": out.insertions,
        "hits": out.hits,
        "reference_glosses": n_ref,
    }


def topk_hits(logits: torch.Tensor, targets: torch.Tensor, k: int) -> tuple[int, int]:
    """(hits, count) of reference glosses within the top-k of teacher-forced logits (B, L, V), targets (B, L);
    PAD and EOS positions are not glosses and are not counted."""
    keep = (targets != PAD) & (targets != EOS)
    top = logits.topk(min(k, logits.shape[-1]), dim=-1).indices  # (B, L, k)
    hit = (top == targets.unsqueeze(-1)).any(-1) & keep
    return int(hit.sum()), int(keep.sum())


def topk_accuracy(logits: torch.Tensor, targets: torch.Tensor, k: int) -> float:
    hits, count = topk_hits(logits, targets, k)
    return 100 * hits / count if count else 0.0


def _check(references: list[str], hypotheses: list[str]) -> None:
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
