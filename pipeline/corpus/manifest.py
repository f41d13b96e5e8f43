"""The corpus manifest (`manifest.parquet`): one row per utterance, the contract every stage reads."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow as pa

SPLITS = ("train", "val", "test", "test_unseen")
TASKS = ("isolated", "continuous")
MANIFEST_SCHEMA = pa.schema([
    ("utt_id", pa.string()), ("video", pa.string()), ("glosses", pa.string()), ("split", pa.string()),
    ("signer", pa.string()), ("fps", pa.float64()), ("n_frames", pa.int64()), ("task", pa.string()),
    ("width", pa.int64()), ("height", pa.int64()),
])  # fmt: skip
REQUIRED_COLUMNS = ("utt_id", "video", "glosses", "split", "signer", "fps", "n_frames", "task")


def read_manifest(corpus_dir: str | os.PathLike) -> pd.DataFrame:
    """Load and check `<corpus_dir>/manifest.parquet`; raise with a clear message if it breaks the contract."""
    path = Path(corpus_dir) / "manifest.parquet"
    if not path.exists():
        raise FileNotFoundError(f"no corpus manifest at {path}; run the prepare stage (dvc repro prepare)")
    df = pd.read_parquet(path)
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
    empty = df["glosses"].str.split().str.len().fillna(0) == 0
    if empty.any():
        raise ValueError(f"{path}: utterance {df.loc[empty, 'utt_id'].iloc[0]!r} has no glosses")
    return df
