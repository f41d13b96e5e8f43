"""The `pose` corpus source: a folder of pose-format `.pose` files and a table of their glosses, with no video.

The table (`glosses_table`) has the columns of the `csv` source (`pipeline/corpus/table.py`), with `pose` (the
file, relative to `pose_dir`) in place of `video`, and no `start` / `end` (a `.pose` file is one utterance). Each
file is read with pose-format's reader (`pipeline.posefile`: every version and layout it knows, or a recorded skip
that says what is missing) and copied into the corpus as `poses/<utt_id>.pose`; its frame rate, frame count and
size come from the file. The manifest's `video` is empty: `extract` fills the `mediapipe` track from Holistic
layouts and the `dwpose` track from OpenPose layouts (the `posefile` backend) and masks every other track, and
Stage II (which learns from video) has nothing to train on.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

from pipeline.corpus.importing import Entry, ImportConfig, import_corpus
from pipeline.corpus.sources import register_source
from pipeline.corpus.table import read_table


@dataclass(frozen=True)
class PoseCorpusConfig(ImportConfig):
    pose_dir: str = "external/corpus/poses"  # the .pose files
    glosses_table: str = "external/corpus/poses.csv"  # columns pose, glosses (split, signer: optional)
    delimiter: str = ","


def copy_pose(entry: Entry, corpus_dir: Path, utt_id: str) -> dict:
    """The `MediaFn` of .pose entries: the file read (so a bad one is skipped now, naming what is wrong) and copied."""
    from pipeline.posefile import PoseFileError, read_pose_file  # pose-format: only for corpora that use it

    if not entry.span.whole:
        raise ValueError("start / end are not read for .pose files (one file is one utterance)")
    if not entry.media.is_file():
        raise FileNotFoundError(f"{entry.media}: no such .pose file")
    pose = read_pose_file(entry.media)
    if not (math.isfinite(pose.fps) and pose.fps > 0):  # the manifest's fps: the corpus' hours divide by it
        raise PoseFileError(f"{entry.media}: fps {pose.fps:g} is not a frame rate")
    dest = Path("poses") / f"{utt_id}.pose"
    (corpus_dir / dest.parent).mkdir(exist_ok=True)
    tmp = corpus_dir / f"{dest}.partial"
    shutil.copyfile(entry.media, tmp)
    tmp.replace(corpus_dir / dest)
    return {"video": "", "pose": str(dest), "fps": float(pose.fps), "n_frames": pose.n_frames,
            "width": pose.width, "height": pose.height}  # fmt: skip


@register_source("pose", config=PoseCorpusConfig)
def build(cfg: PoseCorpusConfig, out_dir: Path, workers: int | None = None) -> dict:
    entries, skipped = read_table(Path(cfg.glosses_table), cfg.delimiter, media="pose", root=Path(cfg.pose_dir),
                                  param="corpus.pose.glosses_table")  # fmt: skip
    return import_corpus(cfg, entries, skipped, out_dir, workers, media=copy_pose)
