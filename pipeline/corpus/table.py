"""The `csv` corpus source: a table of videos and their glosses, for any corpus without a format of its own.

Columns (a header row names them; their order is free, other columns are ignored):

    video    path of the video, relative to the table's folder (or absolute)          required
    glosses  the gloss sequence, glosses separated by spaces                           required
    split    train | val | test (| test_unseen); empty: assigned (by signer when possible)   optional
    signer   who signs                                                                 optional
    start    where the utterance starts in the video, in seconds (empty: 0)            optional
    end      where it ends, in seconds (empty: the end of the video)                  optional

A row with one gloss is an isolated sign, a row with more a continuous utterance. A malformed row is skipped and
reported by its line number; the rest imports.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from pipeline.corpus.clips import Span
from pipeline.corpus.importing import Entry, ImportConfig, Skip, import_corpus
from pipeline.corpus.manifest import SPLITS
from pipeline.corpus.sources import register_source
from pipeline.vocab import tokenize


@dataclass(frozen=True)
class CSVConfig(ImportConfig):
    table: str = "external/corpus/corpus.csv"  # the table (columns in pipeline/corpus/table.py and the README)
    delimiter: str = ","


def read_table(
    path: Path, delimiter: str = ",", media: str = "video", root: Path | None = None, param: str = "corpus.csv.table"
) -> tuple[list[Entry], list[Skip]]:
    """The table's rows as entries, and the rows that cannot be read (named `<table>:<line>`). `media` is the
    column naming each row's file, relative to `root` (default: the table's folder); `param` names the table in
    errors."""
    if not path.is_file():
        raise FileNotFoundError(f"{param}: no table at {path}")
    with open(path, newline="", encoding="utf-8-sig") as f:
        try:
            reader = csv.DictReader(f, delimiter=delimiter)
            rows = list(reader)
            # the reader's own header, not the first row's keys: a table of a header alone has a header, no rows
            header = [(c or "").strip() for c in reader.fieldnames or []]
        except (csv.Error, UnicodeDecodeError) as err:
            raise ValueError(f"{param}: {path} is not a readable CSV table ({err})") from err
    if not header:
        raise ValueError(f"{param}: {path} is empty: no header row")
    if missing := [c for c in (media, "glosses") if c not in header]:
        raise ValueError(f"{param}: {path} has no column {missing} (its header: {header})")
    if not rows:
        raise ValueError(f"{param}: {path} has no rows under its header")
    entries, skipped = [], []
    for line, row in enumerate(rows, start=2):
        name = f"{path.name}:{line}"
        try:
            entries.append(_entry(row, root or path.parent, media, name))
        except ValueError as err:
            skipped.append((name, str(err)))
    return entries, skipped


def _entry(row: dict, root: Path, media: str, name: str) -> Entry:
    if None in row or any(v is None for v in row.values()):
        raise ValueError("malformed row: its number of fields is not the header's")
    row = {k.strip(): v.strip() for k, v in row.items()}
    glosses = tuple(tokenize(row["glosses"]))
    if not row[media]:
        raise ValueError(f"empty {media}")
    if not glosses:
        raise ValueError("empty gloss")
    split = row.get("split") or None
    if split is not None and split not in SPLITS:
        raise ValueError(f"split {split!r} is not one of {list(SPLITS)}")
    start, end = _seconds(row.get("start"), "start"), _seconds(row.get("end"), "end")
    if end is not None and end <= (start or 0.0):
        raise ValueError(f"end {end} is not after start {start or 0.0}")
    span = Span() if not start and end is None else Span(start or 0.0, end, "second")
    task = "isolated" if len(glosses) == 1 else "continuous"
    path = root / row[media]
    return Entry(name, path, glosses, span, split, row.get("signer") or None, task, utt_id=path.stem)


def _seconds(value: str | None, column: str) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"{column} {value!r} is not a number of seconds") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{column} {value!r} is not a time in the video")
    return seconds


@register_source("csv", config=CSVConfig)
def build(cfg: CSVConfig, out_dir: Path, workers: int | None = None) -> dict:
    entries, skipped = read_table(Path(cfg.table), cfg.delimiter)
    return import_corpus(cfg, entries, skipped, out_dir, workers)
