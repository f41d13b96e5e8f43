"""Extraction and feature-store benchmarks (needs `make repro` first: it reads data/).

    python bench/bench_extract.py [--videos 12] [--repeats 3]

(a) MediaPipe Holistic frames/s: the extract stage (process pool over utterances, store writing included) and
    its backend alone in this process (`extractors.backends.holistic`) vs pose-format's `video_to_pose`
    (`pose_format.bin.pose_estimation.pose_video`, writing a .pose file), on the same videos, alternating;
    model complexity 1 for all.
(b) Reading every utterance of the fused store (`data/features.zarr`) vs one `.npy` file per utterance: time
    (random-access `read` per utterance, a sequential `iter_utterances` pass, one bulk `read_all`) and bytes on
    disk. Both sides are read warm (just written, in the page cache).
(c) The `fuse` stage on the default tracks.
All figures are medians over `--repeats` runs; ratios are computed from medians of the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from extractors.backends.holistic import HolisticBackend  # noqa: E402
from pipeline.corpus.manifest import read_manifest  # noqa: E402
from pipeline.fuse import fuse  # noqa: E402
from pipeline.store import FrameStore  # noqa: E402


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def bench_mediapipe(corpus: Path, n_videos: int, repeats: int) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pose_format.bin.pose_estimation import pose_video

    from pipeline.corpus.manifest import MANIFEST_SCHEMA
    from pipeline.extract import extract_track

    rows = read_manifest(corpus).iloc[:n_videos]
    videos = [corpus / v for v in rows["video"]]
    frames = int(rows["n_frames"].sum())
    ours, theirs, stage = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        sub = Path(tmp) / "corpus"  # the same videos as a corpus of their own, for the whole extract stage
        sub.mkdir()
        (sub / "videos").symlink_to(corpus / "videos")
        pq.write_table(
            pa.Table.from_pandas(rows, schema=MANIFEST_SCHEMA, preserve_index=False), sub / "manifest.parquet"
        )
        for r in range(repeats):
            with contextlib.redirect_stderr(io.StringIO()):
                report = extract_track("mediapipe", sub, Path(tmp) / f"tracks{r}", backend="holistic")
            stage.append(frames / report["seconds"])
            t0 = time.perf_counter()
            for v in videos:
                HolisticBackend().extract_video(v)
            ours.append(frames / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                for v in videos:
                    pose_video(str(v), os.path.join(tmp, "out.pose"), "mediapipe", progress=False)
            theirs.append(frames / (time.perf_counter() - t0))
    o, t, s = statistics.median(ours), statistics.median(theirs), statistics.median(stage)
    return {
        "videos": len(videos),
        "frames": frames,
        "signx_extract_stage_frames_per_s": round(s, 1),
        "ratio_stage_over_pose_format": round(s / t, 3),
        "signx_frames_per_s": round(o, 1),
        "pose_format_video_to_pose_frames_per_s": round(t, 1),
        "ratio_signx_over_pose_format": round(o / t, 3),
        "runs_signx": [round(x, 1) for x in ours],
        "runs_pose_format": [round(x, 1) for x in theirs],
    }


def bench_store_vs_npy(features: Path, repeats: int) -> dict:
    store = FrameStore(features)
    with tempfile.TemporaryDirectory() as tmp:
        npy_dir = Path(tmp)
        for u in store.utt_ids:
            np.save(npy_dir / f"{u}.npy", store.read(u))
        per_utt, walk, bulk, npy = [], [], [], []
        for _ in range(repeats):
            fresh = FrameStore(features)
            t0 = time.perf_counter()
            for u in fresh.utt_ids:
                fresh.read(u)
            per_utt.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for _ in FrameStore(features).iter_utterances():
                pass
            walk.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            FrameStore(features).read_all()
            bulk.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for u in store.utt_ids:
                np.load(npy_dir / f"{u}.npy")
            npy.append(time.perf_counter() - t0)
        npy_bytes, npy_files = _du(npy_dir), len(store.utt_ids)
    store_files = sum(1 for p in features.rglob("*") if p.is_file())
    s_per, s_walk, s_bulk, s_npy = (statistics.median(x) for x in (per_utt, walk, bulk, npy))
    return {
        "utterances": len(store),
        "frames": int(store.offsets[-1]),
        "store_read_each_utterance_s": round(s_per, 3),
        "store_iter_utterances_s": round(s_walk, 3),
        "store_read_all_s": round(s_bulk, 3),
        "npy_read_each_utterance_s": round(s_npy, 3),
        "ratio_store_each_over_npy": round(s_per / s_npy, 3),
        "ratio_store_iter_over_npy": round(s_walk / s_npy, 3),
        "ratio_store_bulk_over_npy": round(s_bulk / s_npy, 3),
        "store_bytes": _du(features),
        "npy_bytes": npy_bytes,
        "ratio_store_bytes_over_npy": round(_du(features) / npy_bytes, 3),
        "store_files": store_files,
        "npy_files": npy_files,
    }


def bench_fuse(corpus: Path, tracks: Path, repeats: int) -> dict:
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            times.append(fuse(corpus, tracks, Path(tmp) / "features.zarr")["seconds"])
    return {"fuse_seconds_median": round(statistics.median(times), 2), "runs": times}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="bench/results/extract.json")
    args = ap.parse_args()
    corpus, tracks, features = ROOT / "data/corpus", ROOT / "data/tracks", ROOT / "data/features.zarr"
    if not features.exists():
        sys.exit("bench_extract needs the pipeline's outputs: run `make repro` first")
    results = {
        "cpu_count": os.cpu_count(),
        "mediapipe_extraction": bench_mediapipe(corpus, args.videos, args.repeats),
        "fused_store_vs_npy": bench_store_vs_npy(features, args.repeats),
        "fuse_stage": bench_fuse(corpus, tracks, args.repeats),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
