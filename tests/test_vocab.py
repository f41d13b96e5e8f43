"""Gloss vocabulary: whole-token glosses, special tokens, unknown glosses, persistence."""

from __future__ import annotations

import pytest

from pipeline.corpus.glossary import CONVENTION_GLOSSES
from pipeline.vocab import BOS, EOS, PAD, SPECIAL_TOKENS, UNK, UnknownGlossError, Vocab, tokenize

ASLLRP_LINE = 'IX-1p #IF ns-fs-MARY DATE/DESSERT EACH+ONE HEADBAND_2 part:indef DCL:"long" QMwg'


def test_asllrp_gloss_strings_round_trip_unchanged(tmp_path):
    vocab = Vocab(CONVENTION_GLOSSES)
    ids = vocab.encode(ASLLRP_LINE)
    assert len(ids) == len(ASLLRP_LINE.split()) == 9  # never split inside a gloss
    assert min(ids) >= len(SPECIAL_TOKENS)
    assert vocab.decode(ids) == ASLLRP_LINE
    vocab.save(tmp_path / "v.json")
    assert Vocab.load(tmp_path / "v.json").decode(ids) == ASLLRP_LINE


def test_tokenize_splits_on_any_whitespace_only():
    assert tokenize("  #IF\tns-fs-MARY\n DATE/DESSERT ") == ["#IF", "ns-fs-MARY", "DATE/DESSERT"]
    assert tokenize("") == []


def test_decode_stops_at_eos_and_drops_padding():
    vocab = Vocab(("A", "B"))
    a, b = vocab.encode("A B")
    assert vocab.decode([BOS, a, PAD, b, EOS, a]) == "A B"
    assert vocab.decode([UNK, a]) == "<unk> A"


def test_unknown_glosses_raise_or_map_to_unk():
    vocab = Vocab(("A", "B"))
    with pytest.raises(UnknownGlossError, match="unknown gloss 'C'"):
        vocab.encode("A C")
    assert vocab.encode("A C", unknown="unk") == [vocab.encode("A")[0], UNK]
    with pytest.raises(UnknownGlossError):
        vocab.encode("<eos>")  # special tokens are not glosses
    assert "A" in vocab and "<pad>" not in vocab


@pytest.mark.parametrize(
    ("glosses", "message"),
    [(("A", "A"), "duplicate"), (("A B",), "without whitespace"), (("",), "non-empty"), (("<unk>",), "special")],
)
def test_invalid_vocabularies_are_refused(glosses, message):
    with pytest.raises(ValueError, match=message):
        Vocab(glosses)
