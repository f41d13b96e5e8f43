"""Corpus generation throughput: utterances/s and frames/s (median of repeated runs), and where the time goes.

    python bench/bench_corpus.py [--utterances 120] [--repeats 3]

Runs the real generator (the `corpus.synthetic` params of params.yaml, fewer utterances) with 1 worker and with all
cores, side by side in one process, then times the three phases of one utterance (motion + kinematics, rendering,
encoding).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.corpus import sources, synthetic
from pipeline.corpus.motion import utterance_motion
from pipeline.corpus.render import make_background, make_camera, render_frames, write_video
from pipeline.corpus.skeleton import J, forward_kinematics
from pipeline.params import load_params


def _phases(cfg: synthetic.SyntheticConfig, n: int) -> dict[str, float]:
    """Median milliseconds per frame of each phase over `n` utterances."""
    rng = np.random.default_rng(0)
    signers = synthetic.make_signers(cfg, rng)
    lexicon = synthetic.make_lexicon(cfg.n_glosses, cfg.difficulty.minimal_pair_fraction, rng)
    plans = synthetic.plan_utterances(cfg, signers, rng)[:n]
    times: dict[str, list[float]] = {"motion_and_kinematics": [], "render": [], "encode_mp4": []}
    with tempfile.TemporaryDirectory() as tmp:
        for plan in plans:
            signer = signers[plan.signer]
            r = np.random.default_rng(plan.index)
            t0 = time.perf_counter()
            mo = utterance_motion([lexicon.signs[i] for i in plan.tokens], signer, cfg.fps, cfg.difficulty, r)
            pts = forward_kinematics(mo.pose, mo.transl, signer.shape, mo.brow)
            cam = make_camera(signer, cfg.width, cfg.height, len(pts), r)
            t1 = time.perf_counter()
            bg = make_background(signer, cfg.width, cfg.height, cfg.difficulty.clutter, r)
            frames = render_frames(pts, cam, mo.pose[:, J["jaw"], 0], signer, bg, r)
            t2 = time.perf_counter()
            write_video(Path(tmp) / "v.mp4", frames, cfg.fps)
            t3 = time.perf_counter()
            for k, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2)):
                times[k].append(1000 * dt / len(pts))
    return {k: round(statistics.median(v), 4) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--utterances", type=int, default=120)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="bench/results/corpus.json")
    args = ap.parse_args()

    params = load_params()
    # the synthetic signer's knobs whatever corpus.source selects: this benchmarks the generator
    section = {**params["corpus"], "source": "synthetic"}
    _, base = sources.parse_corpus_params(section, seed=params.get("seed", 0))
    n_unseen = max(1, args.utterances // 10)
    cfg = replace(base, n_utterances=args.utterances, n_unseen_utterances=n_unseen, min_train_occurrences=1)
    results = {"config": {"utterances": args.utterances + n_unseen, "width": cfg.width, "height": cfg.height,
                          "fps": cfg.fps, "repeats": args.repeats, "cpu_count": os.cpu_count()}}  # fmt: skip
    for workers in sorted({1, os.cpu_count() or 1}):
        utt_s, frames_s = [], []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                s = synthetic.generate_corpus(cfg, Path(tmp) / "c", workers=workers)
            n_utt, n_frames = sum(s.utterances.values()), sum(s.frames.values())
            utt_s.append(n_utt / s.generation_seconds)
            frames_s.append(n_frames / s.generation_seconds)
        results[f"workers_{workers}"] = {
            "utterances_per_s_median": round(statistics.median(utt_s), 2),
            "frames_per_s_median": round(statistics.median(frames_s), 1),
            "runs_utterances_per_s": [round(x, 2) for x in utt_s],
        }
    results["ms_per_frame_median_by_phase"] = _phases(cfg, 20)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
