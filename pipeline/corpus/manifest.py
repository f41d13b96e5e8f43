"""The corpus contract every later stage reads, and the helpers every corpus source writes it with.

A corpus folder holds `manifest.parquet` (one row per utterance, `MANIFEST_SCHEMA`), `vocab.json` and the videos
the manifest points at (relative paths); a source may add its own files (the synthetic signer's `skeleton.zarr`).
An utterance that comes as a pose-format `.pose` file (the `pose` source) names it in `pose` and may have no video
(`video` is then the empty string): the tracks the file carries are read from it, the others are masked. A source
that has them keeps the utterances' spoken-language `translation` (ASLLRP's English translation).
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.vocab import Vocab, tokenize

SPLITS = ("train", "val", "test", "test_unseen")
TASKS = ("isolated", "continuous")
MANIFEST_SCHEMA = pa.schema([
    ("utt_id", pa.string()), ("video", pa.string()), ("glosses", pa.string()), ("split", pa.string()),
    ("signer", pa.string()), ("fps", pa.float64()), ("n_frames", pa.int64()), ("task", pa.string()),
    ("width", pa.int64()), ("height", pa.int64()), ("pose", pa.string()), ("translation", pa.string()),
])  # fmt: skip
OPTIONAL_COLUMNS = ("pose", "translation")  # written only when some utterance has one; read back as "" otherwise
REQUIRED_COLUMNS = ("utt_id", "video", "glosses", "split", "signer", "fps", "n_frames", "task")


def read_manifest(corpus_dir: str | os.PathLike) -> pd.DataFrame:
    """Load and check `<corpus_dir>/manifest.parquet`; raise with a clear message if it breaks the contract."""
    path = Path(corpus_dir) / "manifest.parquet"
    if not path.exists():
        raise FileNotFoundError(f"no corpus manifest at {path}; run the prepare stage (dvc repro prepare)")
    df = pd.read_parquet(path)
    for column in OPTIONAL_COLUMNS:  # absent from a corpus without them
        df[column] = df[column].fillna("") if column in df.columns else ""
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}")
    if df["utt_id"].duplicated().any():
        raise ValueError(f"{path}: duplicate utt_id {df.loc[df['utt_id'].duplicated(), 'utt_id'].iloc[0]!r}")
    bad = sorted(set(df["split"]) - set(SPLITS))
    if bad:
        raise ValueError(f"{path}: unknown splits {bad}; allowed {list(SPLITS)}")
    bad = sorted(set(df["task"]) - set(TASKS))
    if bad:
        raise ValueError(f"{path}: unknown tasks {bad}; allowed {list(TASKS)}")
    neither = (df["video"] == "") & (df["pose"] == "")
    if neither.any():
        raise ValueError(f"{path}: utterance {df.loc[neither, 'utt_id'].iloc[0]!r} has neither a video nor a pose file")
    empty = df["glosses"].str.split().str.len().fillna(0) == 0
    if empty.any():
        raise ValueError(f"{path}: utterance {df.loc[empty, 'utt_id'].iloc[0]!r} has no glosses")
    return df


def has_videos(corpus_dir: str | os.PathLike) -> bool:
    """Whether any utterance of the corpus comes with a video (a corpus of `.pose` files has none)."""
    return bool((read_manifest(corpus_dir)["video"] != "").any())


@contextmanager
def atomic_corpus_dir(out_dir: str | os.PathLike) -> Iterator[Path]:
    """An empty `<out_dir>.partial` folder to build a corpus in, moved onto `out_dir` only when the block ends
    without an exception: a failed or killed build leaves the previous corpus untouched (and the next build
    clears the leftover)."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    yield tmp
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)


def write_manifest(rows: Sequence[dict], corpus_dir: str | os.PathLike, vocab: Vocab) -> None:
    """Write `manifest.parquet` (rows in the order given, one dict per utterance with `MANIFEST_SCHEMA`'s keys;
    `width` / `height` may be left out when unknown, `pose` and `translation` when there are none) and
    `vocab.json`, then check them against the contract.

    Every gloss must be in `vocab` (later stages refuse unknown glosses) and every video and pose file named must
    exist.
    """
    corpus_dir = Path(corpus_dir)
    columns: dict[str, list] = {name: [] for name in MANIFEST_SCHEMA.names}
    for row in rows:
        if missing := [c for c in REQUIRED_COLUMNS if c not in row]:
            raise ValueError(f"manifest row {row.get('utt_id')!r}: missing columns {missing}")
        if extra := sorted(set(row) - set(columns)):
            raise ValueError(f"manifest row {row['utt_id']!r}: unknown columns {extra}; the schema has {list(columns)}")
        if oov := [g for g in tokenize(row["glosses"]) if g not in vocab]:
            raise ValueError(
                f"manifest row {row['utt_id']!r}: glosses {oov} are not in the vocabulary (drop the utterance or "
                f"lower corpus.min_train_occurrences)"
            )
        for kind in ("video", "pose"):
            if row.get(kind) and not (corpus_dir / row[kind]).is_file():
                raise FileNotFoundError(f"manifest row {row['utt_id']!r}: no {kind} file at {corpus_dir / row[kind]}")
        for name, values in columns.items():
            values.append(row.get(name, "" if name in OPTIONAL_COLUMNS else None))
    schema = MANIFEST_SCHEMA
    for name in OPTIONAL_COLUMNS:
        if not any(columns[name]):
            del columns[name]
            schema = schema.remove(schema.get_field_index(name))
    pq.write_table(pa.table(columns, schema=schema), corpus_dir / "manifest.parquet")
    vocab.save(corpus_dir / "vocab.json")
    read_manifest(corpus_dir)  # the checks every reader applies, now rather than in a later stage


def train_vocabulary(rows: Sequence[dict], min_train_occurrences: int) -> Vocab:
    """The glosses that occur at least `min_train_occurrences` times in train, most frequent first (ties by name):
    the vocabulary selection an importer of a real corpus applies (`corpus.min_train_occurrences`)."""
    counts = Counter(g for r in rows if r["split"] == "train" for g in tokenize(r["glosses"]))
    kept = sorted((g for g, n in counts.items() if n >= min_train_occurrences), key=lambda g: (-counts[g], g))
    return Vocab(tuple(kept))


def manifest_summary(rows: Sequence[dict], vocab: Vocab) -> dict:
    """What `prepare` reports for any corpus: vocabulary size, signers, and utterances / frames / tokens per split."""
    n_tokens = [len(tokenize(r["glosses"])) for r in rows]

    def per_split(values: Sequence[int]) -> dict[str, int]:
        return {s: sum(v for r, v in zip(rows, values) if r["split"] == s) for s in SPLITS}

    frames_by_fps: dict[float, int] = {}  # frames summed per frame rate first: one division per rate
    for r in rows:
        frames_by_fps[r["fps"]] = frames_by_fps.get(r["fps"], 0) + r["n_frames"]
    seen = {r["signer"] for r in rows if r["split"] != "test_unseen"}
    return {
        "n_glosses": len(vocab.glosses),
        "signers_seen": len(seen),
        "signers_unseen": len({r["signer"] for r in rows} - seen),
        "utterances": {s: sum(r["split"] == s for r in rows) for s in SPLITS},
        "frames": per_split([r["n_frames"] for r in rows]),
        "tokens": per_split(n_tokens),
        "mean_tokens_per_utterance": round(float(np.mean(n_tokens)), 3) if rows else 0.0,
        "hours": round(sum(n / fps for fps, n in frames_by_fps.items()) / 3600, 4),
    }
