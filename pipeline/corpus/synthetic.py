"""The synthetic signer corpus source (`corpus.source: synthetic`): signers, utterance plans, splits, generator.

What it writes under the corpus directory (the contract in `manifest.py`, plus the ground truth):

- `manifest.parquet`: one row per utterance (utt_id, video, glosses, split, signer, fps, n_frames, task,
  width, height);
- `vocab.json`, `lexicon.json` (each gloss's phonological parameters and the minimal pairs), `signers.json`;
- `videos/<utt_id>.mp4`: the rendered RGB video;
- `skeleton.zarr`: the ground-truth state per frame, read by the extractors' `simulated` backends
  (`values` laid out as `SKELETON_LAYOUT`, plus `token`: which gloss of the utterance is being signed).

Its knobs are `corpus.synthetic` in params.yaml (`SyntheticConfig`); the registry (`sources.py`) adds
`config.json` and the atomic move into place. Everything is a function of the config and its seed: each utterance
draws from its own generator seeded by (seed, utterance index), so the result does not depend on the number of
worker processes.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline.corpus.manifest import manifest_summary, write_manifest
from pipeline.corpus.motion import Difficulty, Signer, utterance_motion
from pipeline.corpus.phonology import Lexicon, make_lexicon
from pipeline.corpus.render import make_background, make_camera, render_frames, write_video
from pipeline.corpus.skeleton import CAMERA_DIMS, JOINT_NAMES, PARENTS, POINT_NAMES, BodyShape, J, forward_kinematics
from pipeline.corpus.sources import CorpusConfig, build_source, register_source
from pipeline.store import FrameStoreWriter
from pipeline.vocab import Vocab

TASKS = ("continuous", "isolated", "mixed")

# Ground-truth skeleton store: per-frame vector layout (slices into `values`).
SKELETON_LAYOUT: dict[str, tuple[int, int]] = {
    "pose": (0, 165),  # SMPL-X full pose, 55 joints x axis-angle
    "transl": (165, 168),  # root translation (m)
    "points": (168, 168 + 3 * len(POINT_NAMES)),  # 139 world points x (x, y, z), POINT_NAMES order
    "camera": (585, 592),  # CAMERA_DIMS
    "brow": (592, 593),  # brow raise (+1) / furrow (-1)
}
SKELETON_DIMS = 593


@dataclass(frozen=True)
class SyntheticConfig(CorpusConfig):
    """`corpus.synthetic` in params.yaml (see docs/CORPUS.md for what each knob does), plus the shared corpus
    fields (split fractions, `min_train_occurrences`, seed) it inherits."""

    task: str = "continuous"  # continuous utterances, isolated signs, or a mix
    isolated_fraction: float = 0.3  # share of isolated clips when task is "mixed"
    n_glosses: int = 100
    n_signers: int = 6
    n_unseen_signers: int = 1  # held out entirely: they appear only in test_unseen
    n_utterances: int = 600  # by the seen signers, split into train / val / test
    n_unseen_utterances: int = 60
    tokens_per_utterance: tuple[int, int] = (3, 7)  # continuous utterance length range (inclusive)
    zipf_exponent: float = 1.0  # gloss frequencies follow 1 / rank**s
    width: int = 128
    height: int = 128
    fps: float = 15.0
    difficulty: Difficulty = field(default_factory=Difficulty)

    def __post_init__(self) -> None:
        super().__post_init__()

        def bad(msg: str) -> None:
            raise ValueError(f"corpus.synthetic params: {msg}")

        if self.task not in TASKS:
            bad(f"task {self.task!r} is not known; choose one of {list(TASKS)}")
        for name in ("n_glosses", "n_signers", "n_utterances", "width", "height"):
            if int(getattr(self, name)) < 1:
                bad(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.n_unseen_utterances < 0 or self.n_unseen_signers < 0:
            bad("n_unseen_signers and n_unseen_utterances must not be negative")
        if self.n_unseen_signers >= self.n_signers:
            bad(f"n_unseen_signers ({self.n_unseen_signers}) must be less than n_signers ({self.n_signers})")
        if (self.n_unseen_signers == 0) != (self.n_unseen_utterances == 0):
            bad("n_unseen_signers and n_unseen_utterances must be both zero or both positive")
        if self.width % 2 or self.height % 2:
            bad(f"width and height must be even for the video encoder, got {self.width}x{self.height}")
        if not self.fps > 0:
            bad(f"fps must be positive, got {self.fps}")
        lo, hi = self.tokens_per_utterance
        if not 1 <= lo <= hi:
            bad(f"tokens_per_utterance must be [min, max] with 1 <= min <= max, got {list(self.tokens_per_utterance)}")
        if not 0 <= self.isolated_fraction <= 1:
            bad(f"isolated_fraction must be in [0, 1], got {self.isolated_fraction}")
        if not 0 <= self.difficulty.minimal_pair_fraction <= 1:
            bad("difficulty.minimal_pair_fraction must be in [0, 1]")

    @classmethod
    def parse_own(cls, own: dict, where: str) -> dict:
        """YAML lists -> tuples, and the `difficulty` subsection -> `Difficulty` (its unknown keys refused too).
        Values keep their YAML types otherwise (`fps: 15` stays an int, as the corpus bytes were made with)."""
        own = dict(own)
        diff = dict(own.pop("difficulty", {}) or {})
        dknown = {f.name for f in fields(Difficulty)}
        if unknown := sorted(set(diff) - dknown):
            raise ValueError(f"{where}.difficulty params: unknown keys {unknown}; known keys are {sorted(dknown)}")
        for k in ("speed_range", "amplitude_range"):
            if k in diff:
                diff[k] = tuple(diff[k])
        if "tokens_per_utterance" in own:
            own["tokens_per_utterance"] = tuple(own["tokens_per_utterance"])
        return {**own, "difficulty": Difficulty(**diff)}


# --- signers -----------------------------------------------------------------------------------------------
SKIN_TONES = ((160, 190, 235), (130, 170, 222), (105, 145, 200), (80, 115, 170), (60, 85, 130), (45, 62, 95))
HAIR_COLOURS = ((20, 20, 25), (30, 45, 70), (60, 95, 140), (150, 185, 215), (125, 125, 125))
SHIRT_COLOURS = (
    (30, 30, 30),
    (90, 40, 20),
    (65, 65, 65),
    (40, 40, 110),
    (40, 80, 40),
    (185, 185, 185),
    (130, 90, 60),
    (30, 95, 150),
)
WALL_COLOURS = ((200, 200, 200), (170, 190, 200), (150, 165, 140), (190, 172, 152), (115, 112, 120), (212, 222, 228))


def make_signers(cfg: SyntheticConfig, rng: np.random.Generator) -> list[Signer]:
    """`n_signers` signers; the last `n_unseen_signers` are held out. Spreads are scaled by the difficulty knobs."""
    d = cfg.difficulty
    n_left = max(1 if cfg.n_signers >= 3 else 0, int(round(d.left_handed_fraction * cfg.n_signers)))
    n_seen = cfg.n_signers - cfg.n_unseen_signers
    # one left-handed signer is always among the seen ones, so mirrored signing is learnable from train;
    # the others are drawn from all signers
    left = {int(rng.integers(n_seen))} if n_left else set()
    rest = [i for i in range(cfg.n_signers) if i not in left]
    left |= set(rng.choice(rest, size=n_left - len(left), replace=False).tolist())
    sv, fv, lv = d.signer_variation, d.framing_variation, d.lighting_variation
    signers = []
    for i in range(cfg.n_signers):

        def u(spread: float, var: float = sv) -> float:
            return float(1.0 + rng.uniform(-spread, spread) * var)

        shape = BodyShape(
            height=u(0.08),
            shoulder_width=u(0.1),
            arm_length=u(0.06),
            hand_size=u(0.1),
            head_size=u(0.07),
            girth=u(0.18),
        )
        signers.append(
            Signer(
                signer_id=f"s{i + 1:02d}",
                shape=shape,
                dominant="left" if i in left else "right",
                speed=float(rng.uniform(*d.speed_range)),
                amplitude=float(rng.uniform(*d.amplitude_range)),
                skin=SKIN_TONES[rng.integers(len(SKIN_TONES))],
                hair=HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))],
                shirt=SHIRT_COLOURS[rng.integers(len(SHIRT_COLOURS))],
                long_sleeves=bool(rng.random() < 0.5),
                background=WALL_COLOURS[rng.integers(len(WALL_COLOURS))],
                zoom=u(0.15, fv),
                offset=(float(rng.uniform(-0.08, 0.08) * fv), float(rng.uniform(-0.05, 0.05) * fv)),
                yaw=float(rng.uniform(-0.2, 0.2) * fv),
                brightness=float(1.0 + rng.uniform(-0.25, 0.15) * lv),
                tint=tuple(float(1.0 + rng.uniform(-0.1, 0.1) * lv) for _ in range(3)),
                seen=i < cfg.n_signers - cfg.n_unseen_signers,
            )
        )
    return signers


# --- utterance plans and splits ------------------------------------------------------------------------------
@dataclass(frozen=True)
class UtterancePlan:
    index: int  # seeds this utterance's own generator
    utt_id: str
    signer: int
    split: str
    task: str
    tokens: tuple[int, ...]  # lexicon indices


def zipf_probabilities(n: int, s: float, rng: np.random.Generator) -> np.ndarray:
    """Gloss probabilities 1/rank**s over a seeded random ranking of the lexicon."""
    ranks = np.empty(n)
    ranks[rng.permutation(n)] = np.arange(1, n + 1)
    p = 1.0 / ranks**s
    return p / p.sum()


def plan_utterances(cfg: SyntheticConfig, signers: list[Signer], rng: np.random.Generator) -> list[UtterancePlan]:
    """Token sequences, signers, tasks and splits for every utterance.

    Train covers every gloss at least `min_train_occurrences` times, so every gloss of val, test and
    test_unseen also appears in train. Splits are disjoint by utterance, and test_unseen by signer.
    """
    p = zipf_probabilities(cfg.n_glosses, cfg.zipf_exponent, rng)
    n_val, n_test = int(round(cfg.val_fraction * cfg.n_utterances)), int(round(cfg.test_fraction * cfg.n_utterances))
    n_train = cfg.n_utterances - n_val - n_test
    splits = ["train"] * n_train + ["val"] * n_val + ["test"] * n_test + ["test_unseen"] * cfg.n_unseen_utterances
    tasks = []
    for _ in splits:
        isolated = cfg.task == "isolated" or (cfg.task == "mixed" and rng.random() < cfg.isolated_fraction)
        tasks.append("isolated" if isolated else "continuous")
    lo, hi = cfg.tokens_per_utterance
    lengths = [1 if t == "isolated" else int(rng.integers(lo, hi + 1)) for t in tasks]

    seen = [i for i, s in enumerate(signers) if s.seen]
    unseen = [i for i, s in enumerate(signers) if not s.seen]

    # Train: the coverage tokens plus Zipf draws, shuffled into one stream and cut into utterances.
    coverage = np.repeat(np.arange(cfg.n_glosses), cfg.min_train_occurrences)
    train_slots = sum(lengths[:n_train])
    if train_slots < len(coverage):
        raise ValueError(
            f"corpus.synthetic params: {n_train} train utterances hold {train_slots} tokens, fewer than n_glosses x "
            f"min_train_occurrences = {len(coverage)}; raise corpus.synthetic.n_utterances or lower "
            f"corpus.synthetic.n_glosses / corpus.min_train_occurrences"
        )
    stream = np.concatenate([coverage, rng.choice(cfg.n_glosses, size=train_slots - len(coverage), p=p)])
    stream = stream[rng.permutation(len(stream))]
    starts = np.cumsum([0, *lengths[:n_train]])
    _avoid_repeats(stream, starts, rng)
    plans = []
    for idx, (split, task, length) in enumerate(zip(splits, tasks, lengths)):
        if split == "train":
            tokens = stream[starts[idx] : starts[idx + 1]].tolist()
        else:
            tokens = [int(rng.choice(cfg.n_glosses, p=p))]
            while len(tokens) < length:
                cand = int(rng.choice(cfg.n_glosses, p=p))
                if cand != tokens[-1] or cfg.n_glosses == 1:
                    tokens.append(cand)
        pool = unseen if split == "test_unseen" else seen
        signer = pool[idx % len(pool)]
        plans.append(UtterancePlan(idx, f"{signers[signer].signer_id}_{idx:05d}", signer, split, task, tuple(tokens)))
    return plans


def _avoid_repeats(stream: np.ndarray, starts: np.ndarray, rng: np.random.Generator) -> None:
    """Swap tokens (in place) so that no utterance repeats a gloss back to back; the multiset is unchanged."""
    same_utt = np.zeros(len(stream), dtype=bool)  # same_utt[i]: i and i-1 belong to one utterance
    same_utt[1:] = True
    same_utt[starts[:-1]] = False

    def clash(i: int) -> bool:
        return (same_utt[i] and stream[i] == stream[i - 1]) or (
            i + 1 < len(stream) and same_utt[i + 1] and stream[i] == stream[i + 1]
        )

    for _ in range(20):
        bad = [i for i in range(1, len(stream)) if same_utt[i] and stream[i] == stream[i - 1]]
        if not bad:
            return
        for i in bad:
            for j in rng.permutation(len(stream))[:50]:
                stream[i], stream[j] = stream[j], stream[i]
                if not clash(i) and not clash(j):
                    break
                stream[i], stream[j] = stream[j], stream[i]


# --- generation ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Context:
    cfg: SyntheticConfig
    lexicon: Lexicon
    signers: tuple[Signer, ...]
    video_dir: str


_CTX: _Context | None = None


def _init_worker(ctx: _Context) -> None:
    global _CTX
    _CTX = ctx


@lru_cache(maxsize=64)
def _background(signer_index: int) -> np.ndarray:
    cfg = _CTX.cfg
    rng = np.random.default_rng([cfg.seed, 2, signer_index])
    return make_background(_CTX.signers[signer_index], cfg.width, cfg.height, cfg.difficulty.clutter, rng)


def build_utterance(plan: UtterancePlan) -> tuple[str, np.ndarray, np.ndarray]:
    """Animate, render and write one utterance. Returns (utt_id, skeleton values (T, 593), token (T,))."""
    ctx = _CTX
    cfg = ctx.cfg
    rng = np.random.default_rng([cfg.seed, 1, plan.index])
    signer = ctx.signers[plan.signer]
    signs = [ctx.lexicon.signs[t] for t in plan.tokens]
    motion = utterance_motion(signs, signer, cfg.fps, cfg.difficulty, rng, continuous=plan.task == "continuous")
    points = forward_kinematics(motion.pose, motion.transl, signer.shape, motion.brow)
    T = len(points)
    camera = make_camera(signer, cfg.width, cfg.height, T, rng)
    values = np.concatenate(
        [motion.pose.reshape(T, -1), motion.transl, points.reshape(T, -1), camera, motion.brow[:, None]], axis=1
    ).astype(np.float32)
    frames = render_frames(points, camera, motion.pose[:, J["jaw"], 0], signer, _background(plan.signer), rng)
    write_video(Path(ctx.video_dir) / f"{plan.utt_id}.mp4", frames, cfg.fps)
    return plan.utt_id, values, motion.token


@dataclass
class CorpusSummary:
    """`prepare`'s metrics for a synthetic corpus (`metrics/corpus.json`)."""

    source: str
    n_glosses: int
    n_minimal_pairs: int
    signers_seen: int
    signers_unseen: int
    utterances: dict[str, int]
    frames: dict[str, int]
    tokens: dict[str, int]
    mean_tokens_per_utterance: float
    hours: float
    generation_seconds: float


def generate_corpus(cfg: SyntheticConfig, out_dir: str | os.PathLike, workers: int | None = None) -> CorpusSummary:
    """Generate the whole corpus into `out_dir` atomically (the registry's `build_source`, typed)."""
    return CorpusSummary(**build_source(cfg, out_dir, workers))


@register_source("synthetic", config=SyntheticConfig)
def build(cfg: SyntheticConfig, out_dir: Path, workers: int | None = None) -> dict:
    """Write the synthetic corpus into the empty folder `out_dir`; returns its summary."""
    (out_dir / "videos").mkdir()
    rng = np.random.default_rng([cfg.seed, 0])
    signers = make_signers(cfg, rng)
    lexicon = make_lexicon(cfg.n_glosses, cfg.difficulty.minimal_pair_fraction, rng)
    plans = plan_utterances(cfg, signers, rng)
    ctx = _Context(cfg, lexicon, tuple(signers), str(out_dir / "videos"))
    n_frames = _render(ctx, plans, out_dir / "skeleton.zarr", workers)

    vocab = Vocab(tuple(lexicon.glosses))  # lexicon order, not frequency order: the lexicon defines the glosses
    rows = [
        {
            "utt_id": plan.utt_id,
            "video": f"videos/{plan.utt_id}.mp4",
            "glosses": " ".join(vocab.glosses[t] for t in plan.tokens),
            "split": plan.split,
            "signer": signers[plan.signer].signer_id,
            "fps": float(cfg.fps),
            "n_frames": n_frames[plan.utt_id],
            "task": plan.task,
            "width": cfg.width,
            "height": cfg.height,
        }  # fmt: skip
        for plan in plans
    ]
    write_manifest(rows, out_dir, vocab)
    (out_dir / "lexicon.json").write_text(json.dumps(lexicon.to_dict(), indent=1, ensure_ascii=False) + "\n")
    (out_dir / "signers.json").write_text(json.dumps([s.to_dict() for s in signers], indent=1) + "\n")

    summary = manifest_summary(rows, vocab)
    return {  # the signer counts from the signer list: a signer with no utterance is still one of the corpus
        "n_glosses": summary.pop("n_glosses"),
        "n_minimal_pairs": len(lexicon.minimal_pairs),
        "signers_seen": sum(s.seen for s in signers),
        "signers_unseen": sum(not s.seen for s in signers),
        **{k: v for k, v in summary.items() if not k.startswith("signers_")},
    }


def _render(ctx: _Context, plans: list[UtterancePlan], store_path: Path, workers: int | None) -> dict[str, int]:
    """Render every utterance (in `workers` processes) and store its ground truth; returns frames per utt_id."""
    workers = workers or int(os.environ.get("SIGNX_WORKERS", 0)) or os.cpu_count() or 1
    store = FrameStoreWriter(store_path, {"values": ((SKELETON_DIMS,), "float32"), "token": ((), "int16")})
    n_frames: dict[str, int] = {}
    progress = tqdm(total=len(plans), desc="prepare: render utterances", unit="utt", mininterval=1.0)
    if workers == 1:
        _init_worker(ctx)
        results = map(build_utterance, plans)
        pool = None
    else:
        pool = ProcessPoolExecutor(  # spawn, not fork: the parent may already run threads (zarr, pyarrow)
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(ctx,),
        )
        results = pool.map(build_utterance, plans, chunksize=4)
    try:
        for utt_id, values, token in results:
            store.add(utt_id, values=values, token=token)
            n_frames[utt_id] = len(values)
            progress.update()
    finally:
        progress.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    store.close(
        {
            "layout": {k: list(v) for k, v in SKELETON_LAYOUT.items()},
            "point_names": list(POINT_NAMES),
            "joint_names": list(JOINT_NAMES),
            "parents": list(PARENTS),
            "camera_dims": list(CAMERA_DIMS),
            "fps": ctx.cfg.fps,
            "source": "synthetic",
            "coordinates": "SMPL-X world: metres, +y up, +x signer's left, +z signer's front; camera looks down -z",
        }
    )
    return n_frames
