"""Frames per second of each real extractor backend on the same videos (needs `make repro` first: it reads the
synthetic corpus' 128 x 128 videos in data/corpus).

    python bench/bench_backends.py [--videos 8] [--repeats 3] [--device cpu]

The models are the tests' tiny ones (`tests/tiny_models.py`: the real models' input / output signatures, almost no
compute), so the figure is the pipeline's own cost around a model: decoding, letterbox / crops / resizing,
normalisation, the runtime call, decoding the outputs, the signer crop and the 24 x 24 cells. Real MediaPipe
Holistic runs beside them on the same videos. Each backend's `extract` runs in this process, one thread pool as
the runtime sets it up; figures are medians over `--repeats` passes over all the videos, in alternation.
Writes bench/results/backends.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from extractors.registry import Backend  # noqa: E402
from pipeline.corpus.manifest import read_manifest  # noqa: E402
from tests import tiny_models  # noqa: E402

CORPUS = ROOT / "data/corpus"


def _builders(tmp: Path, size: int, device: str, rows: list[dict]) -> dict[str, tuple[Callable[[], Backend], tuple]]:
    """{track/backend: (a function opening it, its model calls to time as "attribute.method")} with the tiny
    models written to `tmp`."""
    from extractors.backends.dwpose_onnx import DWPoseONNX
    from extractors.backends.holistic import HolisticBackend

    whole = tiny_models.PlantedPerson((0, 0, size, size), score=50.0)  # seen in any frame with a little red
    det, pose = tiny_models.dwpose_models(tmp / "dwpose", [whole], ratio=640 / size)
    dw = {**DWPoseONNX.options, "detector": str(det), "pose_model": str(pose), "device": device}
    return {
        "dwpose/onnx": (lambda: DWPoseONNX(dw, CORPUS, 0), ("det.run", "pose.run")),
        "mediapipe/holistic": (lambda: HolisticBackend(HolisticBackend.options, CORPUS, 0), ()),
    }


def _open(build: Callable[[], Backend], model_calls: tuple[str, ...]) -> tuple[Backend, ModelClock]:
    backend, clock = build(), ModelClock()
    for call in model_calls:
        owner, method = call.rsplit(".", 1)
        clock.wrap(getattr(backend, owner) if owner else backend, method)
    return backend, clock


class ModelClock:
    """Seconds spent inside a backend's model calls (the runtime running the tiny model), accumulated."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, owner: object, method: str) -> None:
        """Time every call of `owner.method` from now on."""
        inner = getattr(owner, method)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0

        setattr(owner, method, timed)


def _pass(backend: Backend, rows: list[dict], clock: ModelClock) -> tuple[int, float, float]:
    """(frames, seconds, seconds inside the model) of one pass over `rows`."""
    t0, frames, model0 = time.perf_counter(), 0, clock.seconds
    for i, row in enumerate(rows):
        frames += len(backend.extract(row, i).values)
    return frames, time.perf_counter() - t0, clock.seconds - model0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if not (CORPUS / "manifest.parquet").exists():
        sys.exit("bench_backends: no data/corpus; run `make repro` (or `dvc repro prepare`) first")
    rows = read_manifest(CORPUS).iloc[: args.videos].to_dict("records")
    size = int(rows[0]["width"])
    with tempfile.TemporaryDirectory() as tmp:
        opened = {name: _open(*spec) for name, spec in _builders(Path(tmp), size, args.device, rows).items()}
        for backend, clock in opened.values():
            _pass(backend, rows[:1], clock)  # warm-up: lazy imports, graph set-up
        runs: dict[str, list[tuple[int, float, float]]] = {name: [] for name in opened}
        for _ in range(args.repeats):
            for name, (backend, clock) in opened.items():
                runs[name].append(_pass(backend, rows, clock))
    results = {}
    for name, passes in runs.items():
        frames = passes[0][0]
        total = statistics.median(p[1] for p in passes)
        overhead = statistics.median(p[1] - p[2] for p in passes)
        results[name] = {
            "frames": frames,
            "median_seconds": round(total, 3),
            "frames_per_second": round(frames / total, 1),
            # without the time inside the tiny model's calls: the pipeline's own cost (None: not separable)
            "overhead_frames_per_second": round(frames / overhead, 1) if overhead < total else None,
            "version": opened[name][0].version(),
        }
    out = {"videos": len(rows), "frame_size": f"{size}x{size}", "device": args.device, "repeats": args.repeats,
           "machine": platform.processor() or platform.machine(), "backends": results}  # fmt: skip
    (ROOT / "bench/results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench/results/backends.json").write_text(json.dumps(out, indent=2) + "\n")
    for name, r in results.items():
        own = r["overhead_frames_per_second"]
        print(
            f"{name:22s} {r['frames_per_second']:8.1f} frames/s, pipeline overhead alone {own} frames/s "
            f"({r['frames']} frames, median {r['median_seconds']} s)"
        )


if __name__ == "__main__":
    main()
