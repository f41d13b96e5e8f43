"""Frames per second of each real extractor backend on the same videos (needs `make repro` first: it reads the
synthetic corpus' 128 x 128 videos in data/corpus).

    python bench/bench_backends.py [--videos 8] [--repeats 3] [--device cpu]

The models are the tests' tiny ones (`tests/tiny_models.py`: the real models' input / output signatures, almost no
compute; Depth Anything's architecture at 2 layers for the depth model), so the figure is the pipeline's own
cost around a model: decoding, letterbox / crops / resizing, normalisation, the runtime call, decoding the
outputs, the signer crop and the 24 x 24 cells; `overhead_frames_per_second` leaves out the time inside the
model calls. The two importers read outputs written in the real layouts (one person per frame). Real MediaPipe
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from extractors.registry import Backend  # noqa: E402
from pipeline.corpus.manifest import read_manifest  # noqa: E402
from tests import tiny_models  # noqa: E402

CORPUS = ROOT / "data/corpus"


def _builders(tmp: Path, size: int, device: str, rows: list[dict]) -> dict[str, tuple[Callable[[], Backend], tuple]]:
    """{track/backend: (a function opening it, its model calls to time as "attribute.method")} with the tiny
    models written to `tmp`."""
    from extractors.backends.depth import DepthModel, PrimeDepthImport
    from extractors.backends.dwpose_onnx import DWPoseONNX
    from extractors.backends.holistic import HolisticBackend
    from extractors.backends.sapiens_torchscript import SapiensTorchScript
    from extractors.backends.smplerx_import import SMPLerXImport

    (tmp / "primedepth").mkdir()

    whole = tiny_models.PlantedPerson((0, 0, size, size), score=50.0)  # seen in any frame with a little red
    det, pose = tiny_models.dwpose_models(tmp / "dwpose", [whole], ratio=640 / size)
    dw = {**DWPoseONNX.options, "detector": str(det), "pose_model": str(pose), "device": device}
    seg = tiny_models.sapiens_model(tmp / "sapiens/seg.pt2")
    sap = {**SapiensTorchScript.options, "model": str(seg), "device": device}
    dm = {**DepthModel.options, "model_dir": str(tiny_models.depth_model_folder(tmp / "depth")), "device": device}
    for row in rows:  # PrimeDepth and SMPLer-X outputs for the same videos, in their real layouts
        stem, n = Path(row["video"]).stem, int(row["n_frames"])
        np.savez(tmp / f"primedepth/{stem}.npz", depth_ssi=_depth_scene(n, size))
        _smplerx_output(tmp / "smplerx" / stem, n, size)
    return {
        "dwpose/onnx": (lambda: DWPoseONNX(dw, CORPUS, 0), ("det.run", "pose.run")),
        "sapiens/torchscript": (lambda: SapiensTorchScript(sap, CORPUS, 0), ("model",)),
        "primedepth/depth_model": (lambda: DepthModel(dm, CORPUS, 0), ("model",)),
        "primedepth/import": (
            lambda: PrimeDepthImport({"depth_dir": str(tmp / "primedepth"), "first_frame": 1}, CORPUS, 0),
            (),
        ),  # fmt: skip
        "smplerx/import": (
            lambda: SMPLerXImport({"output_dir": str(tmp / "smplerx"), "first_frame": 1}, CORPUS, 0),
            (),
        ),  # fmt: skip
        "mediapipe/holistic": (lambda: HolisticBackend(HolisticBackend.options, CORPUS, 0), ()),
    }


def _depth_scene(n: int, size: int) -> np.ndarray:
    """(n, size, size) inverse depth: a near block (the signer) moving in front of a far wall."""
    depth = np.ones((n, size, size), np.float32)
    for t in range(n):
        x = size // 4 + t % (size // 4)
        depth[t, size // 4 :, x : x + size // 3] = 2.0
    return depth


def _smplerx_output(folder: Path, n: int, size: int) -> None:
    """One person per frame, as SMPLer-X's inference writes it."""
    (folder / "smplx").mkdir(parents=True, exist_ok=True)
    (folder / "meta").mkdir(parents=True, exist_ok=True)
    shapes = {"global_orient": 1, "body_pose": 21, "jaw_pose": 1, "leye_pose": 1, "reye_pose": 1,
              "left_hand_pose": 15, "right_hand_pose": 15}  # fmt: skip
    for t in range(n):
        np.savez(folder / f"smplx/{t + 1:05}_0.npz", **{k: np.full((j, 3), t / n) for k, j in shapes.items()})
        box = [size / 4, size / 8, size / 2, size * 0.85]
        (folder / f"meta/{t + 1:05}_0.json").write_text(json.dumps({"bbox": box}))


def _open(build: Callable[[], Backend], model_calls: tuple[str, ...]) -> tuple[Backend, ModelClock]:
    backend, clock = build(), ModelClock()
    clock.version = backend.version()  # before the wrapping replaces a model by its timed call
    for call in model_calls:
        owner, _, method = call.rpartition(".")
        clock.wrap(getattr(backend, owner) if owner else backend, method)
    return backend, clock


class ModelClock:
    """Seconds spent inside a backend's model calls (the runtime running the tiny model), accumulated."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.version = ""  # the backend's version(), taken before its model calls are wrapped

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
            "version": opened[name][1].version,
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
