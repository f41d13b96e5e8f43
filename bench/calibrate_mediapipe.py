"""Calibration of the simulated MediaPipe sensor against the real MediaPipe Holistic on the synthetic videos
(needs `make repro` first: it reads the synthetic corpus in data/corpus).

    python bench/calibrate_mediapipe.py [--utterances 60] [--seed 0] [--cache DIR]

On a seeded sample of utterances (round-robin over the signers), runs the real Holistic backend
(`extractors/backends/holistic.py`) on the videos and the simulated sensor (`simulate_mediapipe`) before and
after calibration on the same utterances' ground truth, and compares each with the perfect sensor
(`simulate_mediapipe(gt, rng, noise=0.0)`: the ground truth mapped to the track exactly as the sensor maps it).
Per part (pose body, left hand, right hand):

- detection rate: frames where the part is present (pose: the frame mask; a hand: its 63 dims not all zero);
  also split by the wrist's image speed, by the hand being near the face and by it being the signer's dominant
  (signing) hand or not;
- misses: the mean run of missing frames and the share of missed frames in runs of >= 3;
- keypoint error: median and 90th percentile of the 2-D distance in pixels to the perfect sensor's point, on
  frames where both have the part (pose: only landmarks inside the image, the legs below the frame are guesses);
  the error's lag-1 correlation over consecutive frames (how smooth it is); the wrist's median error on slow vs
  fast frames (motion blur);
- handedness: the share of frames where a hand lies nearer the other hand's ground truth (a mirrored left /
  right convention would put it near 1);
- z: least-squares slope and correlation of the track's z against the perfect sensor's, pooled and (median over
  landmarks) per landmark; visibility: mean inside the image and by the distance beyond its border.

"before" is the sensor as it was before this calibration (`simulate_before`, kept verbatim), "after" the
calibrated one (`simulated.simulate_mediapipe` with `simulated.MEDIAPIPE`); both are seeded as the simulated
backend seeds them. Prints a table and writes bench/results/calibrate_mediapipe.json. `--cache DIR` keeps the
real Holistic tracks there (an npz per utterance), so a rerun skips the slow part (Holistic runs at ~15-30
frames/s on a 2-core CPU: the default 60 utterances, ~4900 frames, take 3-5 minutes).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from extractors import mediapipe, registry  # noqa: E402
from extractors.backends import simulated  # noqa: E402
from extractors.backends._ground_truth import GroundTruth, dropouts  # noqa: E402
from extractors.base import TrackFrames  # noqa: E402
from pipeline.corpus.manifest import read_manifest  # noqa: E402
from pipeline.corpus.motion import Signer  # noqa: E402
from pipeline.layout import TRACK_ORDER  # noqa: E402
from pipeline.store import FrameStore  # noqa: E402

CORPUS = ROOT / "data/corpus"
OUT = ROOT / "bench/results/calibrate_mediapipe.json"
PARTS = ("pose", "left_hand", "right_hand")
SLICES = {"pose": mediapipe.POSE, "left_hand": mediapipe.LEFT_HAND, "right_hand": mediapipe.RIGHT_HAND}
SLOW, FAST = 0.01, 0.03  # wrist image speed, fraction of the image height per frame
# pose visibility by the landmark's distance beyond the image border (fraction of the image height; 0: inside)
VIS_BINS = {"inside": (0.0, 0.0), "beyond_0-0.1": (1e-9, 0.1), "beyond_0.1-0.5": (0.1, 0.5), "beyond_0.5+": (0.5, 1e9)}


def simulate_before(gt: GroundTruth, rng: np.random.Generator, noise: float = 1.0) -> TrackFrames:
    """The simulated MediaPipe as it was before this calibration ("signx simulated sensor v1"), verbatim."""
    T, W, H = gt.n_frames, gt.width, gt.height
    f = gt.camera[:, 0]
    norm = np.array([W, H], dtype=np.float64)

    def landmarks(source, origin_depth: np.ndarray, sd: np.ndarray) -> np.ndarray:
        uv = gt.pixel(source) / norm
        depth = np.stack([gt.world([k])[:, 0] for k in source], 1)  # (T, n, 3) world
        z_cam = gt.camera[:, None, 6] - depth[..., 2]  # distance along the optical axis
        z = (z_cam - origin_depth[:, None]) * f[:, None] / origin_depth[:, None] / W
        jitter = rng.normal(0, 1, (T, len(source), 3)) * noise * sd[:, None, None] * np.array([1, 1, 3])
        return np.concatenate([uv, z[..., None]], -1) + jitter

    hips = gt.world([("left_hip", "right_hip")])[:, 0]
    hip_depth = gt.camera[:, 6] - hips[:, 2]
    pose = landmarks(simulated._POSE_SOURCE, hip_depth, np.full(T, 0.004))
    inside = gt.in_frame(pose[..., :2] * norm)
    vis = np.where(inside, np.clip(rng.normal(0.95, 0.03, inside.shape), 0, 1), rng.uniform(0.05, 0.3, inside.shape))
    pose = np.concatenate([pose, vis[..., None]], -1)
    nose = gt.pixel(["face_30"])[:, 0]
    hands = {}
    for side in ("left", "right"):
        speed = gt.speed_px(f"{side}_wrist")
        wrist = gt.world([f"{side}_wrist"])[:, 0]
        hand = landmarks(simulated.hand_source(side), gt.camera[:, 6] - wrist[:, 2], 0.006 + 0.1 * speed / H)
        near_face = np.linalg.norm(gt.pixel([f"{side}_wrist"])[:, 0] - nose, axis=1) < 0.12 * H
        p_lost = 0.008 + np.clip(speed / H - 0.025, 0, None) * 3.0 + 0.04 * near_face
        hands[side] = (hand, dropouts(rng, noise * p_lost, mean_len=5))
    mask = ~dropouts(rng, np.full(T, 0.002 * noise), mean_len=2)
    values = np.zeros((T, 258), dtype=np.float32)
    for t in np.flatnonzero(mask):
        values[t] = mediapipe.to_vector(
            pose[t],
            None if hands["left"][1][t] else hands["left"][0][t],
            None if hands["right"][1][t] else hands["right"][0][t],
        )
    return TrackFrames(values, mask)


def sample(manifest, n: int, seed: int) -> list[int]:
    """`n` manifest positions, round-robin over the signers, each signer's utterances in a seeded order."""
    rng = np.random.default_rng(seed)
    groups = {s: list(rng.permutation(np.flatnonzero(manifest["signer"].to_numpy() == s))) for s in
              sorted(manifest["signer"].unique())}  # fmt: skip
    out: list[int] = []
    while len(out) < min(n, len(manifest)):
        for s in groups:
            if groups[s] and len(out) < n:
                out.append(int(groups[s].pop(0)))
    return out


def real_tracks(manifest, positions: list[int], cache: Path | None) -> tuple[list[TrackFrames], str, float]:
    """The real Holistic track of each utterance (read from / written to `cache` when given)."""
    cls = registry.lookup("mediapipe", "holistic")
    backend = cls(registry.backend_options("mediapipe", cls, {}), CORPUS, 0)
    out, frames, seconds = [], 0, 0.0
    for k, i in enumerate(positions):
        row = manifest.iloc[i].to_dict()
        path = cache / f"{row['utt_id']}.npz" if cache else None
        if path is not None and path.exists():
            with np.load(path) as z:
                out.append(TrackFrames(z["values"], z["mask"]))
            continue
        t0 = time.perf_counter()
        track = backend.extract(row, i)
        seconds += time.perf_counter() - t0
        frames += len(track.mask)
        if path is not None:
            cache.mkdir(parents=True, exist_ok=True)
            np.savez(path, values=track.values, mask=track.mask)
        out.append(track)
        print(f"  holistic {k + 1}/{len(positions)} {row['utt_id']} ({frames / seconds:.0f} frames/s)", flush=True)
    return out, backend.version(), frames / seconds if seconds else float("nan")


def _runs(missing: np.ndarray) -> list[int]:
    """Lengths of the runs of True in a (T,) bool array."""
    padded = np.concatenate([[False], missing, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return (edges[1::2] - edges[::2]).tolist()


def _points(values: np.ndarray, part: str, gt: GroundTruth) -> np.ndarray:
    """(T, n, 2) pixel positions of a part's landmarks."""
    width = 4 if part == "pose" else 3
    pts = values[:, SLICES[part]].reshape(len(values), -1, width)
    return pts[..., :2].astype(np.float64) * [gt.width, gt.height]


def _q(a, q) -> float | None:
    return round(float(np.quantile(a, q)), 3) if len(a) else None


def _fit(x: np.ndarray, y: np.ndarray) -> dict:
    """Least-squares slope of y on x through the origin, and their correlation."""
    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return {"slope": None, "corr": None}
    return {"slope": round(float(x @ y / (x @ x)), 3), "corr": round(float(np.corrcoef(x, y)[0, 1]), 3)}


def figures(tracks: list[TrackFrames], perfect: list[TrackFrames], gts: list[GroundTruth]) -> dict:
    """Per-part figures of `tracks` against the perfect sensor's tracks of the same utterances."""
    out = {}
    for part in PARTS:
        present, runs, err, wrist_err, swapped = [], [], [], {"slow": [], "fast": []}, []
        lag = ([], [])  # the error's x, y on consecutive frames where both have the part
        by_speed = {"slow": [], "mid": [], "fast": []}
        near_face = {"near": [], "away": []}
        by_role = {"dominant": [], "other": []}
        z_pairs, z_each = ([], []), {}
        vis = {name: [] for name in VIS_BINS}
        for track, ref, gt in zip(tracks, perfect, gts):
            v, r = track.values, ref.values
            if part == "pose":
                have = track.mask.copy()
            else:
                have = track.mask & np.any(v[:, SLICES[part]] != 0, axis=1)
            present.append(have)
            runs += _runs(~have)
            both = have & ref.mask
            p, q = _points(v, part, gt), _points(r, part, gt)
            d = np.linalg.norm(p - q, axis=-1)  # (T, n)
            pairs = both[1:] & both[:-1]
            keep = gt.in_frame(q[1:]) & gt.in_frame(q[:-1]) & pairs[:, None]
            lag[0].append((p - q)[:-1][keep].ravel())
            lag[1].append((p - q)[1:][keep].ravel())
            width = 4 if part == "pose" else 3
            tz = v[:, SLICES[part]].reshape(len(v), -1, width)
            rz = r[:, SLICES[part]].reshape(len(r), -1, width)
            if part == "pose":
                inside = gt.in_frame(q)
                sel = both[:, None] & inside
                err.append(d[sel])
                z_pairs[0].append(rz[..., 2][sel])
                z_pairs[1].append(tz[..., 2][sel])
                for j in range(23):  # the legs are below the frame
                    z_each.setdefault(j, ([], []))
                    z_each[j][0].append(rz[sel[:, j], j, 2])
                    z_each[j][1].append(tz[sel[:, j], j, 2])
                beyond = np.maximum(np.maximum(-q, q - [gt.width, gt.height]), 0).max(-1) / gt.height
                for name, (lo, hi) in VIS_BINS.items():
                    vis[name].append(
                        tz[..., 3][both[:, None] & (beyond >= lo) & (beyond <= hi) & (inside == (hi == 0))]
                    )
                continue
            side, other = part.split("_")[0], "right" if part.startswith("left") else "left"
            err.append(d[both].ravel())
            z_pairs[0].append(rz[both, 1:, 2].ravel())  # the wrist's z is 0 by definition
            z_pairs[1].append(tz[both, 1:, 2].ravel())
            for j in range(1, 21):
                z_each.setdefault(j, ([], []))
                z_each[j][0].append(rz[both, j, 2])
                z_each[j][1].append(tz[both, j, 2])
            speed = gt.speed_px(f"{side}_wrist") / gt.height
            for name, sel in (("slow", speed < SLOW), ("fast", speed > FAST)):
                wrist_err[name].append(d[both & sel, 0])
            for name, sel in (
                ("slow", speed < SLOW),
                ("mid", (speed >= SLOW) & (speed <= FAST)),
                ("fast", speed > FAST),
            ):
                by_speed[name].append(have[ref.mask & sel])
            nose = gt.pixel(["face_30"])[:, 0]
            near = np.linalg.norm(gt.pixel([f"{side}_wrist"])[:, 0] - nose, axis=1) < 0.12 * gt.height
            near_face["near"].append(have[ref.mask & near])
            near_face["away"].append(have[ref.mask & ~near])
            by_role["dominant" if gt.signer.dominant == side else "other"].append(have[ref.mask])
            q_other = _points(r, f"{other}_hand", gt)
            d_other = np.linalg.norm(p[:, 0] - q_other[:, 0], axis=-1)
            swapped.append((d_other < d[:, 0])[both])
        present_all = np.concatenate(present)
        miss = np.array(runs)
        e = np.concatenate(err)
        zt, zr = np.concatenate(z_pairs[1]), np.concatenate(z_pairs[0])
        fig = {
            "frames": int(len(present_all)),
            "detection_rate": round(float(present_all.mean()), 4),
            "miss_runs": int(len(miss)),
            "mean_miss_run": round(float(miss.mean()), 2) if len(miss) else 0.0,
            "misses_in_runs_ge3": round(float(miss[miss >= 3].sum() / miss.sum()), 3) if len(miss) else 0.0,
            "error_px_median": _q(e, 0.5),
            "error_px_p90": _q(e, 0.9),
            "error_lag1_corr": _fit(np.concatenate(lag[0]), np.concatenate(lag[1]))["corr"],
            "z_vs_truth": _fit(zr, zt),
            "z_corr_per_landmark_median": _q(
                [
                    c
                    for a, b in z_each.values()
                    if (c := _fit(np.concatenate(a), np.concatenate(b))["corr"]) is not None
                ],
                0.5,
            ),
        }
        if part == "pose":
            fig["visibility_mean"] = {k: round(float(np.concatenate(a).mean()), 3) for k, a in vis.items()}
        else:
            fig["detection_by_speed"] = {k: round(float(np.concatenate(a).mean()), 4) for k, a in by_speed.items()}
            fig["detection_near_face"] = {k: round(float(np.concatenate(a).mean()), 4) for k, a in near_face.items()}
            fig["detection_by_hand_role"] = {k: round(float(np.concatenate(a).mean()), 4) for k, a in by_role.items()}
            fig["wrist_error_px_median"] = {k: _q(np.concatenate(a), 0.5) for k, a in wrist_err.items()}
            fig["swapped_share"] = round(float(np.concatenate(swapped).mean()), 4)
        out[part] = fig
    return out


def simulate(sensor, gts: list[GroundTruth], positions: list[int], noise: float, seed: int) -> list[TrackFrames]:
    """`sensor`'s track of each utterance, seeded as the simulated backend seeds it."""
    track = TRACK_ORDER.index("mediapipe")
    return [sensor(gt, np.random.default_rng([seed, track, i]), noise) for gt, i in zip(gts, positions)]


COLUMNS = {  # name: (header, how a figure prints)
    "main": (
        f"{'det %':>6} {'miss run':>8} {'run>=3 %':>8} {'err med':>7} {'err p90':>7} {'lag-1':>5} {'z corr':>6}",
        lambda f: (
            f"{100 * f['detection_rate']:>6.1f} {f['mean_miss_run']:>8.2f} {100 * f['misses_in_runs_ge3']:>8.1f}"
            f" {f['error_px_median']:>7.2f} {f['error_px_p90']:>7.2f} {f['error_lag1_corr']:>5.2f}"
            f" {f['z_corr_per_landmark_median']:>6.2f}"
        ),
    ),
    "hand": (
        "det % slow/mid/fast | near/away face | dominant/other | wrist err slow/fast px | swapped %",
        lambda f: (
            "/".join(f"{100 * v:.0f}" for v in f["detection_by_speed"].values())
            + " | " + "/".join(f"{100 * v:.0f}" for v in f["detection_near_face"].values())
            + " | " + "/".join(f"{100 * v:.0f}" for v in f["detection_by_hand_role"].values())
            + " | " + "/".join(f"{v:.1f}" for v in f["wrist_error_px_median"].values())
            + f" | {100 * f['swapped_share']:.1f}"
        ),
    ),
    "visibility": (
        "pose visibility: inside | beyond the border 0-0.1 / 0.1-0.5 / 0.5+ image heights",
        lambda f: " / ".join(f"{v:.2f}" for v in f["visibility_mean"].values()),
    ),
}  # fmt: skip
SOURCES = {"real": "real_holistic", "before": "simulated_before", "after": "simulated_after"}


def print_table(results: dict) -> None:
    for part in PARTS:
        header, cell = COLUMNS["main"]
        print(f"\n{part:<10} {header}")
        for name, key in SOURCES.items():
            print(f"  {name:<8} {cell(results[key][part])}")
    for part, kind in (("left_hand", "hand"), ("right_hand", "hand"), ("pose", "visibility")):
        header, cell = COLUMNS[kind]
        print(f"\n{part}: {header}")
        for name, key in SOURCES.items():
            print(f"  {name:<8} {cell(results[key][part])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--utterances", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=None, help="keep / reuse the real Holistic tracks here")
    args = ap.parse_args()

    manifest = read_manifest(CORPUS)
    positions = sample(manifest, args.utterances, args.seed)
    store = FrameStore(CORPUS / "skeleton.zarr")
    signers = {s["signer_id"]: Signer.from_dict(s) for s in json.loads((CORPUS / "signers.json").read_text())}
    rows = [manifest.iloc[i] for i in positions]
    gts = [GroundTruth(store.read(r["utt_id"]), signers[r["signer"]], int(r["width"]), int(r["height"])) for r in rows]

    real, version, fps = real_tracks(manifest, positions, args.cache)
    for r, gt, t in zip(rows, gts, real):
        if len(t.mask) != gt.n_frames:
            raise ValueError(f"{r['utt_id']}: Holistic read {len(t.mask)} frames, the ground truth has {gt.n_frames}")
    after = simulated.simulate_mediapipe
    perfect = simulate(after, gts, positions, 0.0, args.seed)
    results = {
        "real_holistic": figures(real, perfect, gts),
        "simulated_before": figures(simulate(simulate_before, gts, positions, 1.0, args.seed), perfect, gts),
        "simulated_after": figures(simulate(after, gts, positions, 1.0, args.seed), perfect, gts),
    }
    report = {
        "command": " ".join(["python bench/calibrate_mediapipe.py", *sys.argv[1:]]),
        "utterances": len(positions),
        "utt_ids": [r["utt_id"] for r in rows],
        "frames": int(sum(gt.n_frames for gt in gts)),
        "frame_size": f"{int(rows[0]['width'])}x{int(rows[0]['height'])}",
        "seed": args.seed,
        "holistic_version": version,
        "holistic_frames_per_second": None if np.isnan(fps) else round(fps, 1),
        "machine": platform.machine(),
        "parameters_after": dataclasses.asdict(simulated.MEDIAPIPE),
        **results,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2) + "\n")

    print(f"\n{report['utterances']} utterances, {report['frames']} frames ({report['frame_size']}), seed {args.seed}")
    print_table(results)
    print(f"\nwrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
