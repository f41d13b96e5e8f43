"""A contact sheet of the corpus for people: frames of a few utterances, each labelled with its gloss."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from pipeline.corpus.manifest import SPLITS, read_manifest
from pipeline.store import FrameStore
from pipeline.videoio import iter_frames


def read_frames(video: str | os.PathLike, indices: list[int]) -> dict[int, np.ndarray]:
    """The requested frames (RGB) of a video, decoded in one sequential pass (`pipeline.videoio`)."""
    wanted, out = set(indices), {}
    if not wanted:
        return out
    for i, frame in enumerate(iter_frames(video, max_frames=max(wanted) + 1)):
        if i in wanted:
            out[i] = frame
    return out


def draw_pose(pose_file: str | os.PathLike, indices: list[int]) -> dict[int, np.ndarray]:
    """The requested frames of a `.pose` file drawn by pose-format's own visualiser (RGB, on white)."""
    from pose_format import Pose
    from pose_format.pose_visualizer import PoseVisualizer

    wanted, out = set(indices), {}
    pose = Pose.read(Path(pose_file).read_bytes())
    visualiser = PoseVisualizer(pose, thickness=max(1, round(pose.header.dimensions.width / 128)))  # its own: 0 < 75 px
    for i, bgr in enumerate(visualiser.draw(background_color=(255, 255, 255))):
        if i in wanted:
            out[i] = np.ascontiguousarray(bgr[..., ::-1])
        if i >= max(wanted, default=-1):
            break
    return out


def make_preview(corpus_dir: str | os.PathLike, out_png: str | os.PathLike, columns: int = 6) -> list[str]:
    """One row per split (its longest utterance), `columns` frames per row, each labelled with its gloss.

    With the synthetic signer's ground truth (`skeleton.zarr`, its per-frame `token`) the frames are the middle of
    successive signs; without it (an imported corpus) they are spread evenly over the clip, each labelled with the
    gloss at the same share of the gloss sequence (marked `≈`: nothing says where a sign really is). Returns the
    utt_ids shown.
    """
    corpus_dir = Path(corpus_dir)
    manifest = read_manifest(corpus_dir)
    aligned = (corpus_dir / "skeleton.zarr").exists()
    store = FrameStore(corpus_dir / "skeleton.zarr") if aligned else None
    rows = []
    for split in SPLITS:
        sub = manifest[manifest["split"] == split]
        if len(sub):  # prefer the longest continuous utterance, so a row shows several signs
            rows.append(sub.iloc[int(np.argmax(sub["glosses"].str.split().str.len().to_numpy()))])
    fig, axes = plt.subplots(len(rows), columns, figsize=(2.0 * columns, 2.3 * len(rows)), squeeze=False)
    for r, row in enumerate(rows):
        glosses = row["glosses"].split()
        if store is not None:
            picks = _aligned_picks(store.read(row["utt_id"], "token"), glosses, int(row["n_frames"]), columns)
        else:
            picks = _even_picks(glosses, int(row["n_frames"]), columns)
        wanted = [f for f, _ in picks]
        frames = (
            read_frames(corpus_dir / row["video"], wanted)
            if row["video"]
            else draw_pose(corpus_dir / row["pose"], wanted)
        )
        for c, (f, label) in enumerate(picks):
            ax = axes[r, c]
            if f in frames:
                ax.imshow(frames[f])
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{label}\nframe {f}", fontsize=8)
            if c == 0:
                ax.set_ylabel(f"{row['split']}\n{row['signer']}", fontsize=8)
    title = "a frame from the middle of each sign" if aligned else "frames spread evenly over each clip"
    fig.suptitle(f"{'synthetic signer corpus' if aligned else 'corpus'}: {title}", fontsize=10)
    fig.tight_layout()
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=64)
    plt.close(fig)
    return [row["utt_id"] for row in rows]


def _aligned_picks(token: np.ndarray, glosses: list[str], n_frames: int, columns: int) -> list[tuple[int, str]]:
    """(frame, label) at the middle of each sign the ground truth marks, then frames around an isolated sign."""
    mids = [int(np.flatnonzero(token == k).mean()) for k in range(len(glosses)) if (token == k).any()]
    picks = [(f, glosses[k]) for k, f in enumerate(mids)][:columns]
    while len(picks) < columns:  # isolated clips: fill the row with frames around the sign
        f = int(np.linspace(0, n_frames - 1, columns + 2)[len(picks) + 1])
        picks.append((f, glosses[token[f]] if token[f] >= 0 else "(transition)"))
    picks.sort()
    return picks


def _even_picks(glosses: list[str], n_frames: int, columns: int) -> list[tuple[int, str]]:
    """(frame, label) at `columns` evenly spaced inner frames (the clip's ends are usually rest), each labelled
    with the gloss whose equal share of the clip holds it: a guess, so marked as one."""
    frames = np.linspace(0, n_frames - 1, columns + 2)[1:-1].astype(int)
    return [(int(f), f"≈ {glosses[min(len(glosses) - 1, int(f * len(glosses) / n_frames))]}") for f in frames]
