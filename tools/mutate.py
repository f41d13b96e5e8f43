"""Mutation check (`make mutate`): do the tests catch realistic bugs in the core modules?

    python tools/mutate.py                      # every mutation; prints caught / survived and the score
    python tools/mutate.py --only NAME [--only NAME2 ...]
    python tools/mutate.py --list               # the mutations, with the tests that must catch each
    python tools/mutate.py --baseline           # first check that every selection of tests passes unmutated

Each mutation is one small bug a person could plausibly write (an off-by-one, a dropped normalisation, a missing
mask, a wrong axis, swapped arguments), planted in a scratch copy of the repository (never in the working tree,
which others may be editing), followed by the narrowest tests that must catch it (`pytest -x -q`, one thread). A
mutation is *caught* when those tests fail, *survived* when they pass, an *error* when pytest could not run them
(a mutation that no longer applies is refused before anything runs: its snippet must occur exactly once).

The exit status is non-zero when any mutation survived or could not be run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# never copied into the scratch tree: the environment (used in place), DVC's cache and outputs, caches
EXCLUDED = {".venv", ".git", "data", "models", ".dvc/cache", ".dvc/tmp", "bench/results", "exports"}
EXCLUDED_NAMES = {"__pycache__", ".pytest_cache", ".ruff_cache"}


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str  # relative to the repository root
    original: str  # must occur exactly once in `path`
    replacement: str
    tests: tuple[str, ...]  # pytest arguments: test files, optionally -k EXPRESSION


def _m(name: str, path: str, original: str, replacement: str, *tests: str) -> Mutation:
    return Mutation(name, path, original, replacement, tests)


P2G_TESTS = "tests/test_pose2gloss.py"
TRAIN_TESTS = "tests/test_train_pose2gloss.py"

MUTATIONS: tuple[Mutation, ...] = (
    # --- the four that survived the suite of issue 20 ----------------------------------------------------------
    _m("fusion attends to masked tracks", "pipeline/nets/pose2gloss.py",
       "key_padding_mask=pad, need_weights=False", "key_padding_mask=None, need_weights=False",
       P2G_TESTS, "-k", "masked_tracks_get_no_attention"),
    _m("load_split not divided by norm_std", "pipeline/data.py",
       "x = (values[::frame_stride][:max_frames] - norm[0]) / norm[1]",
       "x = values[::frame_stride][:max_frames] - norm[0]",
       TRAIN_TESTS, "-k", "load_split_values"),
    _m("text loss without label smoothing", "pipeline/train_pose2gloss.py",
       'out["text"] = text_loss(logits, targets, cfg.label_smoothing)', 'out["text"] = text_loss(logits, targets, 0.0)',
       TRAIN_TESTS, "-k", "trained_text_loss"),
    _m("best saved every epoch (best = last)", "pipeline/training.py",
       'if "val/wer" in validation and validation["val/wer"] < self.state["best_wer"]:',
       'if "val/wer" in validation:',
       TRAIN_TESTS, "-k", "best_holds"),
    # --- Stage I network and losses --------------------------------------------------------------------------
    _m("decoder sees later glosses (anti-causal mask)", "pipeline/nets/pose2gloss.py",
       "causal = torch.triu(torch.ones(L, L, dtype=torch.bool, device=tokens.device), 1)",
       "causal = torch.tril(torch.ones(L, L, dtype=torch.bool, device=tokens.device), -1)",
       P2G_TESTS, "-k", "causal"),
    _m("decoder reads padding frames", "pipeline/nets/pose2gloss.py",
       "memory_key_padding_mask=frame_pad\n", "memory_key_padding_mask=None\n",
       P2G_TESTS, "-k", "causal"),
    _m("Eq. 8 noise without the square root", "pipeline/nets/pose2gloss.py",
       "return (z_t - abar.sqrt() * self.unet(z_t, t, f)) / (1 - abar).sqrt()",
       "return (z_t - abar.sqrt() * self.unet(z_t, t, f)) / (1 - abar)",
       P2G_TESTS, "-k", "eq8"),
    _m("fused vector averages absent tracks too", "pipeline/nets/pose2gloss.py",
       "w = keep.float().unsqueeze(-1)", "w = torch.ones_like(keep, dtype=torch.float).unsqueeze(-1)",
       P2G_TESTS, "-k", "masked"),
    _m("label smoothing ignored by the text loss", "pipeline/nets/losses.py",
       "ignore_index=PAD, label_smoothing=label_smoothing)", "ignore_index=PAD)",
       P2G_TESTS, "-k", "text_loss"),
    # --- data ------------------------------------------------------------------------------------------------
    _m("track choice ignored (use mask dropped)", "pipeline/data.py",
       "m = mask[::frame_stride][:max_frames] & use", "m = mask[::frame_stride][:max_frames]",
       TRAIN_TESTS, "-k", "load_split_values or single_track"),
    _m("track subsets drop the kept tracks", "pipeline/data.py",
       "m[:, np.setdiff1d(present, keep)] = False", "m[:, keep] = False",
       TRAIN_TESTS, "-k", "augment_track_subsets"),
    _m("collate pads the last real frame", "pipeline/data.py",
       "pad[b, :n] = False", "pad[b, : n - 1] = False",
       TRAIN_TESTS, "-k", "collate_pads"),
    # --- training schedule and checkpoints -------------------------------------------------------------------
    _m("warmup starts at zero (off by one)", "pipeline/training.py",
       "return (step + 1) / warmup", "return step / warmup",
       TRAIN_TESTS, "-k", "lr_schedule"),
    _m("quarter checkpoints one step early", "pipeline/training.py",
       "self.quarters = {round(total_steps * q / 4): f\"q{25 * q}\"",
       "self.quarters = {round(total_steps * q / 4) - 1: f\"q{25 * q}\"",
       TRAIN_TESTS, "-k", "best_holds"),
    # --- store and fuse --------------------------------------------------------------------------------------
    _m("read_many forgets the block's start", "pipeline/store.py",
       "return [block[self.offsets[i] - lo : self.offsets[i + 1] - lo] for i in idx]",
       "return [block[self.offsets[i] : self.offsets[i + 1]] for i in idx]",
       "tests/test_store.py"),
    _m("read drops an utterance's last frame", "pipeline/store.py",
       "return np.asarray(self.group[name][self.offsets[i] : self.offsets[i + 1]])",
       "return np.asarray(self.group[name][self.offsets[i] : self.offsets[i + 1] - 1])",
       "tests/test_store.py"),
    _m("normalisation statistics from every split", "pipeline/fuse.py",
       "rows = train & mask[:, k]", "rows = mask[:, k]",
       "tests/test_extract_fuse.py", "-k", "normalisation"),
    _m("normalisation statistics with one track's mask", "pipeline/fuse.py",
       "rows = train & mask[:, k]", "rows = train & mask[:, 1]",
       "tests/test_extract_fuse.py", "-k", "normalisation"),
    # --- scoring and evaluation ------------------------------------------------------------------------------
    _m("WER without insertions", "pipeline/scoring.py",
       '"wer": 100 * (out.substitutions + out.deletions + out.insertions) / n_ref',
       '"wer": 100 * (out.substitutions + out.deletions) / n_ref',
       "tests/test_scoring.py"),
    _m("Top-k counts EOS as a gloss", "pipeline/scoring.py",
       "keep = (targets != PAD) & (targets != EOS)", "keep = targets != PAD",
       "tests/test_scoring.py"),
    _m("Best from BLEU-4 instead of BLEU-1", "pipeline/scoring.py",
       "max((sentence_bleu(r, h, BLEU1) for", "max((sentence_bleu(r, h) for",
       "tests/test_scoring.py"),
    _m("evaluation rows keep the input order of ids", "pipeline/recognition.py",
       'out["utt_id"] += [u.utt_id for u in items]',
       'out["utt_id"] = [u.utt_id for u in data][: len(out["utt_id"]) + len(items)]',
       "tests/test_evaluate_consistency.py"),
    # --- decoding --------------------------------------------------------------------------------------------
    _m("repetition penalty rewards repeats", "pipeline/decoding.py",
       "seen = torch.where(seen > 0, seen / penalty, seen * penalty)",
       "seen = torch.where(seen > 0, seen * penalty, seen / penalty)",
       "tests/test_decoding.py", "-k", "repetition_penalty"),
    _m("finished beams without the length penalty", "pipeline/decoding.py",
       "finished.append((s / step**lp, [*prefixes[first + beam][1:], tok]))",
       "finished.append((s, [*prefixes[first + beam][1:], tok]))",
       "tests/test_decoding.py", "-k", "length_penalty"),
    _m("CTC best path keeps repeated frames", "pipeline/decoding.py",
       "ids = torch.unique_consecutive(row[:n]).tolist()", "ids = row[:n].tolist()",
       "tests/test_decoding.py", "-k", "ctc_best_path"),
    _m("CTC prefix lets a repeated gloss follow itself", "pipeline/decoding.py",
       "phi = r_sum if last is None else torch.where((last == tok)[:, None], r_prev[..., 1], r_sum)",
       "phi = r_sum",
       "tests/test_decoding.py", "-k", "carry"),
    # --- vocabulary, pose files, corpus import ---------------------------------------------------------------
    _m("decode reads past EOS", "pipeline/vocab.py",
       "if i == EOS:\n                break", "if i == EOS:\n                continue",
       "tests/test_vocab.py"),
    _m("special tokens encode as glosses", "pipeline/vocab.py",
       "if i is None or i < len(SPECIAL_TOKENS):", "if i is None:",
       "tests/test_vocab.py"),
    _m("OpenPose y divided by the width", "pipeline/posefile.py",
       "xyz[..., 1:2] / height, conf[..., None]", "xyz[..., 1:2] / width, conf[..., None]",
       "tests/test_posefile.py", "-k", "openpose"),
    _m("pose point of confidence 0 read as found", "pipeline/posefile.py",
       "found = (c > 0) & np.isfinite(c)", "found = (c >= 0) & np.isfinite(c)",
       "tests/test_posefile.py", "-k", "confidence"),
    _m("clip end in seconds taken inclusive", "pipeline/corpus/clips.py",
       "None if span.end is None else round(span.end * fps)",
       "None if span.end is None else round(span.end * fps) + 1",
       "tests/test_import_corpus.py", "-k", "seconds"),
    _m("imported vocabulary one gloss too many", "pipeline/corpus/importing.py",
       "Vocab(vocab.glosses[: cfg.vocab_size])", "Vocab(vocab.glosses[: cfg.vocab_size + 1])",
       "tests/test_import_corpus.py", "-k", "vocabulary"),
)  # fmt: skip


class MutationError(ValueError):
    """A mutation that does not apply to the current source (its snippet is gone or ambiguous)."""


def check_applies(m: Mutation, root: Path = ROOT) -> None:
    """Refuse a mutation whose snippet does not occur exactly once, or whose tests are missing."""
    n = (root / m.path).read_text().count(m.original)
    if n != 1:
        raise MutationError(f"mutation {m.name!r}: its snippet occurs {n} times in {m.path}, expected exactly once")
    if m.original == m.replacement:
        raise MutationError(f"mutation {m.name!r} changes nothing")
    missing = [t for t in m.tests if t.startswith("tests/") and not (root / t).exists()]
    if missing:
        raise MutationError(f"mutation {m.name!r}: no test file {missing}")


def scratch_copy(dst: Path) -> None:
    """The repository without its environment, DVC data, models and caches (tests build what they need)."""

    def ignore(directory: str, names: list[str]) -> list[str]:
        rel = Path(directory).relative_to(ROOT)
        return [n for n in names if n in EXCLUDED_NAMES or (rel / n).as_posix() in EXCLUDED]

    shutil.copytree(ROOT, dst, ignore=ignore, symlinks=True)


def run_tests(tree: Path, tests: tuple[str, ...], timeout: float) -> tuple[int | None, str]:
    """(pytest's exit status, None on timeout; the output's tail) of `tests` in `tree`, one thread, stop at the
    first failure."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(tree), PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    try:
        proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s"
    return proc.returncode, (proc.stdout + proc.stderr)[-2000:]


def verdict(returncode: int | None) -> str:
    """pytest 1: tests failed, the bug is caught; 0: they passed, it survived; anything else: they did not run."""
    return {0: "survived", 1: "caught"}.get(returncode, "error")


def mutate(m: Mutation, timeout: float) -> tuple[str, float, str]:
    """Plant `m` in a fresh scratch copy and run its tests: (verdict, seconds, output tail)."""
    with tempfile.TemporaryDirectory(prefix="signx-mutate-") as tmp:
        tree = Path(tmp) / "repo"
        scratch_copy(tree)
        check_applies(m, tree)
        target = tree / m.path
        target.write_text(target.read_text().replace(m.original, m.replacement))
        t0 = time.perf_counter()
        rc, tail = run_tests(tree, m.tests, timeout)
        return verdict(rc), time.perf_counter() - t0, tail


def baseline(mutations: list[Mutation], timeout: float) -> list[tuple[str, ...]]:
    """The test selections that fail without any mutation (a 'caught' behind them would mean nothing)."""
    failing = []
    with tempfile.TemporaryDirectory(prefix="signx-mutate-") as tmp:
        tree = Path(tmp) / "repo"
        scratch_copy(tree)
        for tests in dict.fromkeys(m.tests for m in mutations):
            rc, tail = run_tests(tree, tests, timeout)
            print(f"baseline {' '.join(tests)}: {'passes' if rc == 0 else 'FAILS'}", flush=True)
            if rc != 0:
                failing.append(tests)
                print(tail)
    return failing


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", metavar="NAME", help="run only this mutation (repeatable)")
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    ap.add_argument("--baseline", action="store_true", help="first run every test selection unmutated")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per mutation's tests")
    args = ap.parse_args(argv)
    chosen = list(MUTATIONS)
    if args.only:
        unknown = sorted(set(args.only) - {m.name for m in MUTATIONS})
        if unknown:
            ap.error(f"unknown mutations {unknown}; --list names them")
        chosen = [m for m in MUTATIONS if m.name in args.only]
    for m in chosen:  # all refused before anything runs
        check_applies(m)
    if args.list:
        for m in chosen:
            print(f"{m.name}\n    {m.path}: {m.original!r} -> {m.replacement!r}\n    pytest {' '.join(m.tests)}")
        return 0
    if args.baseline and baseline(chosen, args.timeout):
        print("some test selections fail unmutated: fix them first")
        return 1
    width = max(len(m.name) for m in chosen)
    print(f"{'mutation':<{width}}  {'result':<8}  {'seconds':>7}  file", flush=True)
    results = []
    for m in chosen:
        result, seconds, tail = mutate(m, args.timeout)
        results.append((m, result))
        print(f"{m.name:<{width}}  {result:<8}  {seconds:7.1f}  {m.path}", flush=True)
        if result == "error":
            print(tail)
    caught = sum(r == "caught" for _, r in results)
    print(f"\nscore: {caught} of {len(results)} mutations caught ({100 * caught / len(results):.0f} %)")
    for m, r in results:
        if r != "caught":
            print(f"  {r}: {m.name} ({m.path}); pytest {' '.join(m.tests)}")
    return 0 if caught == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
