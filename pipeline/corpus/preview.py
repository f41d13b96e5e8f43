"""A contact sheet of the corpus for people: frames of a few utterances, each labelled with its gloss."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from pipeline.corpus.manifest import SPLITS, read_manifest
from pipeline.store import FrameStore


def read_frames(video: str | os.PathLike, indices: list[int]) -> dict[int, np.ndarray]:
    """Decode the requested frames (RGB) of a video in one sequential pass."""
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise OSError(f"cannot open video {video}")
    wanted, out, i = set(indices), {}, 0
    while len(out) < len(wanted):
        ok, frame = cap.read()
        if not ok:
            break
        if i in wanted:
            out[i] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        i += 1
    cap.release()
    return out


def make_preview(corpus_dir: str | os.PathLike, out_png: str | os.PathLike, columns: int = 6) -> list[str]:
    """One row per split (first utterance of each), `columns` frames per row at the middle of successive signs.

    Returns the utt_ids shown.
    """
    corpus_dir = Path(corpus_dir)
    manifest = read_manifest(corpus_dir)
    store = FrameStore(corpus_dir / "skeleton.zarr")
    rows = []
    for split in SPLITS:
        sub = manifest[manifest["split"] == split]
        if len(sub):  # prefer the longest continuous utterance, so a row shows several signs
            rows.append(sub.iloc[int(np.argmax(sub["glosses"].str.split().str.len().to_numpy()))])
    fig, axes = plt.subplots(len(rows), columns, figsize=(2.0 * columns, 2.3 * len(rows)), squeeze=False)
    for r, row in enumerate(rows):
        token = store.read(row["utt_id"], "token")
        glosses = row["glosses"].split()
        mids = [int(np.flatnonzero(token == k).mean()) for k in range(len(glosses)) if (token == k).any()]
        picks = [(f, glosses[k]) for k, f in enumerate(mids)][:columns]
        while len(picks) < columns:  # isolated clips: fill the row with frames around the sign
            f = int(np.linspace(0, row["n_frames"] - 1, columns + 2)[len(picks) + 1])
            picks.append((f, glosses[token[f]] if token[f] >= 0 else "(transition)"))
        picks.sort()
        frames = read_frames(corpus_dir / row["video"], [f for f, _ in picks])
        for c, (f, label) in enumerate(picks):
            ax = axes[r, c]
            if f in frames:
                ax.imshow(frames[f])
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{label}\nframe {f}", fontsize=8)
            if c == 0:
                ax.set_ylabel(f"{row['split']}\n{row['signer']}", fontsize=8)
    fig.suptitle("synthetic signer corpus: a frame from the middle of each sign", fontsize=10)
    fig.tight_layout()
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=64)
    plt.close(fig)
    return [row["utt_id"] for row in rows]
