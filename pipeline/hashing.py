"""File hashes that identify what ran: an extractor's weights, the Stage I a Stage II model was trained against."""

from __future__ import annotations

import hashlib
import os


def sha256_files(paths: list[str | os.PathLike]) -> str:
    """One sha256 over the bytes of `paths`, in the order given (a model's weight files)."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()
