"""The gloss vocabulary: ID glosses as whole tokens, plus the special tokens the decoders need.

A gloss sequence is a whitespace-separated string; a token is never split further, so `IX-1p`,
`#IF`, `ns-fs-MARY`, `DATE/DESSERT`, `EACH+ONE`, `HEADBAND_2` and `part:indef` survive unchanged.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<bos>", "<eos>", "<unk>")
PAD, BOS, EOS, UNK = range(4)


def tokenize(glosses: str) -> list[str]:
    """Split a gloss string into ID glosses (whitespace only)."""
    return glosses.split()


class UnknownGlossError(KeyError):
    def __str__(self) -> str:  # KeyError would print the repr of its argument
        return str(self.args[0])


@dataclass(frozen=True)
class Vocab:
    """Index <-> gloss mapping. Ids 0-3 are `SPECIAL_TOKENS`; glosses follow in the stored order."""

    glosses: tuple[str, ...]
    _stoi: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for g in self.glosses:
            if not isinstance(g, str) or not g or g != g.strip() or len(g.split()) != 1:
                raise ValueError(f"invalid gloss {g!r}: a gloss is one non-empty token without whitespace")
            if g in SPECIAL_TOKENS:
                raise ValueError(f"gloss {g!r} collides with a special token")
        if len(set(self.glosses)) != len(self.glosses):
            dup = sorted({g for g in self.glosses if self.glosses.count(g) > 1})
            raise ValueError(f"duplicate glosses in vocabulary: {dup[:10]}")
        object.__setattr__(self, "_stoi", {s: i for i, s in enumerate(self.itos)})

    @property
    def itos(self) -> tuple[str, ...]:
        return SPECIAL_TOKENS + self.glosses

    def __len__(self) -> int:
        return len(SPECIAL_TOKENS) + len(self.glosses)

    def __contains__(self, gloss: str) -> bool:
        return gloss in self._stoi and gloss not in SPECIAL_TOKENS

    def encode(self, glosses: str | Sequence[str], unknown: str = "error") -> list[int]:
        """Gloss string (or token list) -> ids.

        `unknown="error"` raises `UnknownGlossError` on a gloss outside the vocabulary; `"unk"` maps it to <unk>.
        """
        tokens = tokenize(glosses) if isinstance(glosses, str) else list(glosses)
        ids = []
        for tok in tokens:
            i = self._stoi.get(tok)
            if i is None or i < len(SPECIAL_TOKENS):
                if unknown != "unk":
                    n = len(self.glosses)
                    raise UnknownGlossError(f"unknown gloss {tok!r} (not in the vocabulary of {n} glosses)")
                i = UNK
            ids.append(i)
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> gloss string: stops at <eos>, drops <pad>/<bos>, keeps <unk> visible."""
        out = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i in (PAD, BOS):
                continue
            out.append(self.itos[i])
        return " ".join(out)

    def save(self, path: str | os.PathLike) -> None:
        data = {"special_tokens": list(SPECIAL_TOKENS), "glosses": list(self.glosses)}
        Path(path).write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocab:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if tuple(data.get("special_tokens", ())) != SPECIAL_TOKENS:
            raise ValueError(f"{path}: special tokens {data.get('special_tokens')} differ from {list(SPECIAL_TOKENS)}")
        return cls(tuple(data["glosses"]))
