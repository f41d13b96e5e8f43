"""`extract@<track>` stage: run one pose extractor over every utterance of the corpus into `data/tracks/<track>.zarr`.

    python -m pipeline.extract <track> [--params params.yaml] [--corpus data/corpus] [--out data/tracks]

Utterances run in parallel (a process pool sized to the machine, `SIGNX_WORKERS` to override), in batches that
are saved as they finish (`<out>/<track>.zarr.parts/`), so a killed run resumes without redoing or duplicating
finished utterances. An utterance whose input cannot be read is recorded as a skip (all frames masked) in
`metrics/extract/<track>.json` and the rest of the corpus completes.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

import extractors
from extractors.base import TrackFrames
from pipeline.corpus.manifest import read_manifest
from pipeline.params import load_params, write_metrics
from pipeline.store import FrameStore, FrameStoreWriter

BATCH = 32  # at most this many utterances per resumable unit of work
REAL_BACKENDS = {
    "smplerx": "import",
    "dwpose": "onnx",
    "mediapipe": "holistic",
    "primedepth": "import",
    "sapiens": "torchscript",
}
BUILT_BACKENDS = {"simulated", "holistic"}


def resolve_backend(track: str, requested: str, corpus_dir: Path) -> str:
    """`auto` means `simulated` on the synthetic corpus (it has a ground-truth skeleton) and the real one elsewhere."""
    if track not in extractors.LAYOUTS:
        raise ValueError(f"unknown track {track!r}; tracks are {list(extractors.TRACK_ORDER)}")
    synthetic = (corpus_dir / "skeleton.zarr").exists()
    backend = ("simulated" if synthetic else REAL_BACKENDS[track]) if requested == "auto" else requested
    allowed = {"simulated", REAL_BACKENDS[track]}
    if backend not in allowed:
        raise ValueError(f"{track}.backend {requested!r} is not known; choose auto or one of {sorted(allowed)}")
    if backend == "simulated" and not synthetic:
        raise ValueError(f"{track}.backend simulated needs the synthetic corpus' skeleton.zarr in {corpus_dir}")
    if backend not in BUILT_BACKENDS:
        raise NotImplementedError(
            f"the {backend!r} backend of {track} is not built yet; set {track}.backend to simulated (synthetic "
            f"corpus) or disable the track with {track}.enabled: false"
        )
    return backend


@dataclass(frozen=True)
class Job:
    track: str
    backend: str
    corpus_dir: str
    seed: int
    noise: float = 1.0  # simulated backends: sensor noise and failure multiplier


_JOB: Job | None = None
_STATE: dict = {}


def _init(job: Job) -> None:
    global _JOB
    _JOB = job
    _STATE.clear()


def _extract_one(index: int, row: dict) -> TrackFrames:
    job = _JOB
    corpus = Path(job.corpus_dir)
    module = importlib.import_module(f"extractors.{job.track}")
    if job.backend == "simulated":
        from extractors.simulation import GroundTruth
        from pipeline.corpus.motion import Signer

        if "skeleton" not in _STATE:
            _STATE["skeleton"] = FrameStore(corpus / "skeleton.zarr")
            signers = json.loads((corpus / "signers.json").read_text())
            _STATE["signers"] = {s["signer_id"]: Signer.from_dict(s) for s in signers}
        values = _STATE["skeleton"].read(row["utt_id"])
        gt = GroundTruth(values, _STATE["signers"][row["signer"]], int(row["width"]), int(row["height"]))
        rng = np.random.default_rng([job.seed, extractors.TRACK_ORDER.index(job.track), index])
        return module.simulate(gt, rng, noise=job.noise)
    if job.backend == "holistic":
        from extractors.mediapipe_holistic import HolisticBackend

        if "holistic" not in _STATE:
            _STATE["holistic"] = HolisticBackend()
        return _STATE["holistic"].extract_video(corpus / row["video"])
    raise NotImplementedError(job.backend)


def _run_batch(batch: tuple[int, list[dict]]) -> tuple[int, list[tuple[str, TrackFrames | None, str]]]:
    start, rows = batch
    out = []
    for k, row in enumerate(rows):
        try:
            frames = _extract_one(start + k, row)
            if len(frames.values) != row["n_frames"]:
                raise ValueError(f"{len(frames.values)} frames extracted, manifest says {row['n_frames']}")
            out.append((row["utt_id"], frames, ""))
        except (OSError, ValueError, RuntimeError) as err:  # unreadable, corrupt or empty input: skip, keep going
            out.append((row["utt_id"], None, f"{type(err).__name__}: {err}"))
    return start, out


def _fingerprint(track: str, backend: str, seed: int, manifest: pd.DataFrame, params: dict) -> str:
    h = hashlib.sha256(json.dumps([track, backend, seed, params], sort_keys=True, default=str).encode())
    h.update(pd.util.hash_pandas_object(manifest[["utt_id", "n_frames", "video"]], index=False).values.tobytes())
    return h.hexdigest()[:16]


def _save_batch(parts: Path, start: int, results: list) -> None:
    ids = [u for u, _, _ in results]
    vals = [f.values if f is not None else np.zeros((0, 0), np.float32) for _, f, _ in results]
    masks = [f.mask if f is not None else np.zeros(0, bool) for _, f, _ in results]
    tmp = parts / f"batch_{start:07d}.tmp.npz"
    np.savez(
        tmp,
        ids=np.array(ids),
        errors=np.array([e for _, _, e in results]),
        lengths=np.array([len(v) for v in vals]),
        values=np.concatenate([v for v in vals if v.size] or [np.zeros((0, 1), np.float32)]),
        mask=np.concatenate(masks),
    )
    os.replace(tmp, parts / f"batch_{start:07d}.npz")


def _load_batch(path: Path, dims: int) -> list[tuple[str, TrackFrames | None, str]]:
    with np.load(path) as z:
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
    workers: int | None = None, report: str | os.PathLike | None = None, params: dict | None = None,
) -> dict:  # fmt: skip
    """Extract `track` for every utterance in the manifest; returns the report (also written to `report`)."""
    t0 = time.perf_counter()
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    manifest = read_manifest(corpus_dir)
    backend = resolve_backend(track, backend, corpus_dir)
    layout = extractors.LAYOUTS[track]
    store_path = out_dir / f"{track}.zarr"
    parts = out_dir / f"{track}.zarr.parts"
    fingerprint = _fingerprint(track, backend, seed, manifest, params or {})
    meta = parts / "meta.json"
    if parts.exists() and (not meta.exists() or json.loads(meta.read_text()).get("fingerprint") != fingerprint):
        shutil.rmtree(parts)  # left by a run with other inputs: nothing there can be reused
    parts.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps({"fingerprint": fingerprint}))

    rows = manifest.to_dict("records")
    size = max(1, min(BATCH, -(-len(rows) // 64)))  # >= 64 batches to share out; depends on the corpus only
    batches = [(s, rows[s : s + size]) for s in range(0, len(rows), size)]
    todo = [b for b in batches if not (parts / f"batch_{b[0]:07d}.npz").exists()]
    noise = float((params or {}).get("noise", 1.0))
    if noise < 0:
        raise ValueError(f"{track}.noise must be >= 0, got {noise}")
    job = Job(track, backend, str(corpus_dir), int(seed), noise)
    workers = workers or int(os.environ.get("SIGNX_WORKERS", 0)) or os.cpu_count() or 1
    resumed = len(batches) - len(todo)
    bar = tqdm(total=len(rows), initial=len(rows) - sum(len(b[1]) for b in todo), desc=f"extract {track} ({backend})",
               unit="utt", mininterval=1.0)  # fmt: skip
    if todo:
        if workers == 1:
            _init(job)
            results = map(_run_batch, todo)
            pool = None
        else:
            # spawn, not fork: forking a process that already runs threads (zarr, pyarrow) can crash MediaPipe workers
            pool = ProcessPoolExecutor(
                max_workers=min(workers, len(todo)),
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init,
                initargs=(job,),
            )
            results = pool.map(_run_batch, todo)
        try:
            for start, res in results:
                _save_batch(parts, start, res)
                bar.update(len(res))
        finally:
            bar.close()
            if pool is not None:
                pool.shutdown(cancel_futures=True)
    else:
        bar.close()

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
                "backend": backend,
                "backend_version": _backend_version(backend),
                "fps": float(manifest["fps"].iloc[0]),
                "fingerprint": fingerprint,
                "skipped": skipped,
            }  # fmt: skip
        )
    shutil.rmtree(parts)
    store = FrameStore(store_path)
    mask = store.read_all("mask")
    summary = {
        "track": track,
        "backend": backend,
        "utterances": len(rows),
        "frames": int(len(mask)),
        "detected_frame_fraction": round(float(mask.mean()) if len(mask) else 0.0, 4),
        "skipped": skipped,
        "resumed_batches": resumed,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if report:
        write_metrics(report, summary)
    return summary


def _backend_version(backend: str) -> str:
    if backend == "holistic":
        import mediapipe

        return f"mediapipe {mediapipe.__version__} holistic model_complexity=1"
    return "signx simulated sensor v1"


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
    summary = extract_track(
        args.track, args.corpus, args.out, backend=section.get("backend", "auto"), seed=params.get("seed", 0),
        workers=args.workers, report=f"metrics/extract/{args.track}.json", params=section,
    )  # fmt: skip
    print(
        f"extract {args.track}: {summary['utterances']} utterances, {summary['frames']} frames, "
        f"{len(summary['skipped'])} skipped, detected {summary['detected_frame_fraction']:.1%}, {summary['seconds']} s"
    )


if __name__ == "__main__":
    main()
