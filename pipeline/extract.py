"""`extract@<track>` stage: run one pose extractor over every utterance of the corpus into `data/tracks/<track>.zarr`.

    python -m pipeline.extract <track> [--params params.yaml] [--corpus data/corpus] [--out data/tracks]

Utterances run in parallel (a process pool sized to the machine, `SIGNX_WORKERS` to override), in batches that
are saved as they finish (`<out>/<track>.zarr.parts/`), so a killed run resumes without redoing or duplicating
finished utterances. An utterance whose input cannot be read is recorded as a skip (all frames masked) in
`metrics/extract/<track>.json` and the rest of the corpus completes.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import importlib
import json
import multiprocessing
import os
import shutil
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

import extractors
from extractors import registry
from extractors.base import TrackFrames
from extractors.registry import Backend
from extractors.runtime import BackendSetupError
from pipeline.corpus.manifest import read_manifest
from pipeline.hashing import sha256_files
from pipeline.params import load_params, run_cli, write_metrics
from pipeline.store import FrameStore, FrameStoreWriter

BATCH = 32  # at most this many utterances per resumable unit of work


@dataclass(frozen=True)
class Job:
    """What a worker process needs to open its backend: sent once per worker, not once per utterance."""

    track: str
    backend: str
    module: str  # the backend's module: imported in the worker, which registers the backend there too
    corpus_dir: str
    seed: int
    options: dict


_BACKEND: Backend | None = None


def _init(job: Job, opened: Backend | None = None) -> None:
    """Open the worker's backend (or use `opened`, the stage process's own, when the work runs in-process)."""
    global _BACKEND
    if opened is None:
        _die_with_parent()
    if opened is None:  # a pool worker: the pool already uses every core, so each backend runs single-threaded
        os.environ.setdefault("SIGNX_BACKEND_THREADS", "1")
    importlib.import_module(job.module)
    _BACKEND = opened or registry.lookup(job.track, job.backend)(job.options, Path(job.corpus_dir), job.seed)


def _die_with_parent() -> None:
    """A pool worker is killed with the stage process (Linux), so that a killed stage leaves no worker behind,
    blocked on a pipe nobody reads."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent died before prctl took effect
            os._exit(1)


def _inputs_hash(corpus_dir: Path, rows: list[dict]) -> str:
    """What a batch was extracted from: its manifest rows and the bytes of the files they name (video, .pose). A
    finished batch is reused on resume only if this is unchanged (a video replaced or re-rendered is redone)."""
    h = hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode())
    for row in rows:
        for column in ("video", "pose"):
            path = corpus_dir / str(row.get(column) or "")
            if row.get(column) and path.is_file():
                h.update(sha256_files([path]).encode())
            else:
                h.update(b"-")
    return h.hexdigest()


def _run_batch(batch: tuple[int, list[dict]]) -> tuple[int, list[tuple[str, TrackFrames | None, str]], str]:
    start, rows = batch
    inputs = _inputs_hash(_BACKEND.corpus_dir, rows)  # before reading them: a file changed meanwhile is redone
    out = []
    for k, row in enumerate(rows):
        try:
            frames = _BACKEND.extract(row, start + k)
            if len(frames.values) != row["n_frames"]:
                raise ValueError(f"{len(frames.values)} frames extracted, manifest says {row['n_frames']}")
            out.append((row["utt_id"], frames, ""))
        except (OSError, ValueError, RuntimeError) as err:  # unreadable, corrupt or empty input: skip, keep going
            out.append((row["utt_id"], None, f"{type(err).__name__}: {err}"))
    return start, out, inputs


def _fingerprint(track: str, backend: str, seed: int, corpus_dir: Path, manifest: pd.DataFrame, params: dict) -> str:
    """The run's settings and corpus (its manifest, every column, and the corpus params); each batch's own input
    files are checked separately (`_inputs_hash`)."""
    h = hashlib.sha256(json.dumps([track, backend, seed, params], sort_keys=True, default=str).encode())
    h.update(pd.util.hash_pandas_object(manifest, index=False).values.tobytes())
    if (corpus_dir / "config.json").is_file():
        h.update((corpus_dir / "config.json").read_bytes())
    return h.hexdigest()[:16]


def _save_batch(parts: Path, start: int, results: list, inputs: str) -> None:
    ids = [u for u, _, _ in results]
    vals = [f.values if f is not None else np.zeros((0, 0), np.float32) for _, f, _ in results]
    masks = [f.mask if f is not None else np.zeros(0, bool) for _, f, _ in results]
    tmp = parts / f"batch_{start:07d}.tmp.npz"
    np.savez(
        tmp,
        ids=np.array(ids),
        inputs=np.array(inputs),
        errors=np.array([e for _, _, e in results]),
        lengths=np.array([len(v) for v in vals]),
        values=np.concatenate([v for v in vals if v.size] or [np.zeros((0, 1), np.float32)]),
        mask=np.concatenate(masks),
    )
    os.replace(tmp, parts / f"batch_{start:07d}.npz")


def _finished(path: Path, corpus_dir: Path, rows: list[dict]) -> bool:
    """Whether a saved batch is there and was extracted from the inputs its rows name today."""
    if not path.exists():
        return False
    try:
        with np.load(path, allow_pickle=False) as z:
            return "inputs" in z.files and str(z["inputs"]) == _inputs_hash(corpus_dir, rows)
    except (OSError, ValueError, KeyError):  # a damaged part: redone
        return False


def _load_batch(path: Path, dims: int) -> list[tuple[str, TrackFrames | None, str]]:
    with np.load(path, allow_pickle=False) as z:
        ids, errors, lengths = z["ids"].tolist(), z["errors"].tolist(), z["lengths"]
        values, mask = z["values"], z["mask"]
    out, pos = [], 0
    for u, err, n in zip(ids, errors, lengths):
        if err:
            out.append((u, None, err))
        else:
            out.append((u, TrackFrames(values[pos : pos + n].reshape(n, dims), mask[pos : pos + n]), ""))
            pos += n
    return out


def extract_track(
    track: str, corpus_dir: str | os.PathLike, out_dir: str | os.PathLike, backend: str = "auto", seed: int = 0,
    workers: int | None = None, report: str | os.PathLike | None = None, options: dict | None = None,
) -> dict:  # fmt: skip
    """Extract `track` for every utterance in the manifest with the backend `backend` names (`auto`: see
    `registry.resolve`), configured by `options` (`<track>.options` in params); returns the report (also written
    to `report`)."""
    t0 = time.perf_counter()
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    manifest = read_manifest(corpus_dir)
    videos = bool((manifest["video"] != "").any())
    cls = registry.resolve(track, backend, synthetic=(corpus_dir / "skeleton.zarr").exists(), videos=videos)
    options = registry.backend_options(track, cls, options or {})
    opened = cls(options, corpus_dir, int(seed))  # fails here, once, on a bad option or a missing model
    ran = {"backend": cls.name, "backend_version": opened.version(), "weights_sha256": opened.weights_hash()}
    settings = {**options, "weights": ran["weights_sha256"]}
    fingerprint = _fingerprint(track, cls.name, seed, corpus_dir, manifest, settings)
    parts = _parts_folder(out_dir / f"{track}.zarr.parts", fingerprint)
    rows = manifest.to_dict("records")
    size = max(1, min(BATCH, -(-len(rows) // 64)))  # >= 64 batches to share out; depends on the corpus only
    batches = [(s, rows[s : s + size]) for s in range(0, len(rows), size)]
    todo = [b for b in batches if not _finished(parts / f"batch_{b[0]:07d}.npz", corpus_dir, b[1])]
    job = Job(track, cls.name, cls.__module__, str(corpus_dir), int(seed), options)
    _run_batches(job, todo, parts, len(rows), workers, opened)
    attrs = {"fps": float(manifest["fps"].iloc[0]), "fingerprint": fingerprint}
    skipped = _write_store(out_dir / f"{track}.zarr", track, batches, parts, ran, attrs)
    shutil.rmtree(parts)
    mask = FrameStore(out_dir / f"{track}.zarr").read_all("mask")
    summary = {
        "track": track,
        **ran,
        "utterances": len(rows),
        "frames": int(len(mask)),
        "detected_frame_fraction": round(float(mask.mean()) if len(mask) else 0.0, 4),
        "skipped": skipped,
        "resumed_batches": len(batches) - len(todo),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if report:
        write_metrics(report, summary)
    return summary


def _parts_folder(parts: Path, fingerprint: str) -> Path:
    """The folder of finished batches; one left by a run with other inputs is emptied (nothing there is reusable)."""
    meta = parts / "meta.json"
    if parts.exists() and (not meta.exists() or json.loads(meta.read_text()).get("fingerprint") != fingerprint):
        shutil.rmtree(parts)
    parts.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps({"fingerprint": fingerprint}))
    return parts


def _run_batches(job: Job, todo: list, parts: Path, n_rows: int, workers: int | None, opened: Backend) -> None:
    """Extract the unfinished batches, in this process or a pool, saving each as it finishes."""
    workers = workers or int(os.environ.get("SIGNX_WORKERS", 0)) or os.cpu_count() or 1
    workers = min(workers, opened.max_workers() or workers)
    bar = tqdm(total=n_rows, initial=n_rows - sum(len(b[1]) for b in todo), desc=f"extract {job.track} ({job.backend})",
               unit="utt", mininterval=1.0)  # fmt: skip
    pool = None
    try:
        if not todo:
            return
        if workers == 1:
            _init(job, opened)
            results = map(_run_batch, todo)
        else:
            # spawn, not fork: forking a process that already runs threads (zarr, pyarrow) can crash MediaPipe workers
            pool = ProcessPoolExecutor(
                max_workers=min(workers, len(todo)),
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init,
                initargs=(job,),
            )
            results = pool.map(_run_batch, todo)
        for start, res, inputs in results:
            _save_batch(parts, start, res, inputs)
            bar.update(len(res))
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _write_store(store_path: Path, track: str, batches: list, parts: Path, ran: dict, attrs: dict) -> list[dict]:
    """The track store from the saved batches, in manifest order; a skipped utterance is all masked. Returns the
    skips."""
    layout = extractors.LAYOUTS[track]
    skipped = []
    with FrameStoreWriter(store_path, {"values": ((layout.dims,), "float32"), "mask": ((), "bool")}) as writer:
        for start, batch_rows in batches:
            done = _load_batch(parts / f"batch_{start:07d}.npz", layout.dims)
            for (utt_id, frames, err), row in zip(done, batch_rows):
                if frames is None:
                    skipped.append({"utt_id": utt_id, "reason": err})
                    n = int(row["n_frames"])
                    frames = TrackFrames(np.zeros((n, layout.dims), np.float32), np.zeros(n, bool))
                writer.add(utt_id, values=frames.values, mask=frames.mask)
        writer.close(
            {
                "track": track,
                "dims": layout.dims,
                "dim_names": list(layout.dim_names),
                **ran,
                **attrs,
                "skipped": skipped,
            }  # fmt: skip
        )
    return skipped


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("track", choices=extractors.TRACK_ORDER)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--corpus", default="data/corpus")
    ap.add_argument("--out", default="data/tracks")
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args(argv)
    params = load_params(args.params)
    section = params.get(args.track, {}) or {}
    try:
        summary = extract_track(
            args.track, args.corpus, args.out, backend=section.get("backend", "auto"), seed=params.get("seed", 0),
            workers=args.workers, report=f"metrics/extract/{args.track}.json", options=section.get("options") or {},
        )  # fmt: skip
    except BackendSetupError as err:  # a param names a missing or wrong file: say which, no traceback
        raise SystemExit(f"extract {args.track}: {err}") from None
    print(
        f"extract {args.track}: {summary['utterances']} utterances, {summary['frames']} frames, "
        f"{len(summary['skipped'])} skipped, detected {summary['detected_frame_fraction']:.1%}, {summary['seconds']} s"
    )


if __name__ == "__main__":
    run_cli(main)
