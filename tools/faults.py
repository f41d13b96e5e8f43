"""Fault injection over the whole pipeline (`make faults`).

    python tools/faults.py [--kills 3] [--seed 0] [--stages train_pose2gloss,...] [--work DIR]

On a tiny copy of the project (the DVC tests' corpus and models):
1. an uninterrupted `dvc repro` is the reference (its outputs' hashes in dvc.lock, each stage's duration);
2. in a second copy, `dvc repro` is SIGKILLed (the whole process group: DVC and the stage) at `--kills` random
   points inside each stage in turn, then rerun to the end; every output must then have the reference's hash
   (bitwise: every stage is deterministic on one machine) and `dvc status` must be clean;
3. two `dvc repro` at once: one ends in DVC's lock error, the other completes, the outputs are consistent;
4. where the machine lets it mount a tmpfs: a full disk and a read-only output folder under `extract`, each one
   line on stderr, the previous store byte for byte intact.

Prints one line per stage (kill points tried, whether the rerun matched) and exits non-zero on any mismatch.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.test_pipeline_dvc import _env, make_repo  # noqa: E402  (the DVC tests' tiny repository)


def dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, env=_env(), capture_output=True, text=True)


def lock_outs(repo: Path) -> dict[str, dict[str, str]]:
    """{stage: {output path: md5}} from dvc.lock, for the cached outputs only (metrics files hold timings)."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    cached = declared_outs(repo)
    return {stage: {o["path"]: o.get("md5", "") for o in body.get("outs", []) if o["path"] in cached}
            for stage, body in lock["stages"].items()}  # fmt: skip


def declared_outs(repo: Path) -> set[str]:
    """The paths dvc.yaml declares under `outs` (not metrics or plots), foreach stages expanded."""
    out = set()
    for stage in yaml.safe_load((repo / "dvc.yaml").read_text())["stages"].values():
        body = stage.get("do", stage)
        items = stage.get("foreach", [None])
        for key in items:
            for o in body.get("outs", []):
                path = o if isinstance(o, str) else next(iter(o))
                out.add(path.replace("${item}", str(key)).replace("${key}", str(key)))
    return out


def repro(repo: Path, kill_in: str | None = None, after: float = 0.0) -> tuple[list[tuple[str, float]], bool]:
    """Run `dvc repro`; with `kill_in`, SIGKILL its process group `after` seconds into that stage. Returns the
    stages started with their start times, and whether the kill happened (False: the run ended first)."""
    env = _env() | {"PYTHONUNBUFFERED": "1"}  # each "Running stage" line as it happens, not in a buffered burst
    proc = subprocess.Popen([sys.executable, "-m", "dvc", "repro"], cwd=repo, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
    started: list[tuple[str, float]] = []
    output = []
    for line in proc.stdout:
        output.append(line)
        if line.startswith("Running stage '"):
            started.append((line.split("'")[1], time.monotonic()))
            if started[-1][0] == kill_in:
                time.sleep(after)
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    return started, True
    if proc.wait() != 0 and "Unable to read RWLock-file" in "".join(output):
        # DVC rewrites .dvc/tmp/rwlock in place: a kill while it writes leaves it empty, and DVC refuses to start
        # until it is removed (docs/RELIABILITY.md tells users so); do what the user would, and count it
        (repo / ".dvc/tmp/rwlock").unlink()
        RWLOCK_REPAIRS.append(str(repo))
        return repro(repo, kill_in, after)
    if proc.returncode != 0 and kill_in is None:
        raise RuntimeError(f"dvc repro failed in {repo}:\n{''.join(output[-20:])}")
    return started, False


RWLOCK_REPAIRS: list[str] = []  # repositories whose DVC rwlock file a kill left unreadable


def durations(started: list[tuple[str, float]], end: float) -> dict[str, float]:
    times = [t for _, t in started] + [end]
    return {stage: times[i + 1] - times[i] for i, (stage, _) in enumerate(started)}


def kill_sweep(work: Path, stages: list[str] | None, kills: int, rng: random.Random) -> list[dict]:
    """The reference run, then every stage killed `kills` times at random points and rerun; one row per stage."""
    reference = make_repo(work / "reference")
    started, _ = repro(reference)
    took = durations(started, time.monotonic())
    expected = lock_outs(reference)
    faulty = make_repo(work / "faulty")
    rows = []
    for stage in [s for s, _ in started if not stages or s in stages]:
        # kill points through the stage, in order; each rerun is killed after the gap to the next point, so a stage
        # that resumes is killed further on, and one that restarts is still killed before it ends
        points = sorted(round(rng.uniform(0.05, 0.95) * took[stage], 2) for _ in range(kills))
        gaps = [max(b - a, 0.05 * took[stage]) for a, b in zip([0.0, *points], points)]
        killed = [repro(faulty, stage, t)[1] for t in gaps]
        rows.append({"stage": stage, "seconds": round(took[stage], 1), "kill_points": points, "killed": killed})
    repro(faulty)
    got = lock_outs(faulty)
    clean = "up to date" in dvc(faulty, "status").stdout
    for row in rows:
        row["matched"] = got.get(row["stage"]) == expected[row["stage"]] and clean
        row["differs"] = sorted(p for p, h in expected[row["stage"]].items() if got.get(row["stage"], {}).get(p) != h)
    rows.append(concurrent_repros(faulty, expected))
    return rows


def concurrent_repros(repo: Path, expected: dict) -> dict:
    """Two `dvc repro` at once after a param change: one gets DVC's lock error (the repository lock, or the
    busy-output lock), the other finishes; the outputs are then those of the reference once the param is set back
    (no mixed store)."""
    params = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(params.replace("temperature: 0.7", "temperature: 0.3"))
    procs = [subprocess.Popen([sys.executable, "-m", "dvc", "repro"], cwd=repo, env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]  # fmt: skip
    results = [(p.wait(), p.stdout.read()) for p in procs]
    locked = [out for rc, out in results if rc != 0 and ("Unable to acquire lock" in out or "is busy" in out)]
    finished = [out for rc, out in results if rc == 0]
    (repo / "params.yaml").write_text(params)
    repro(repo)
    matched = len(locked) == 1 and len(finished) == 1 and lock_outs(repo) == expected
    return {"stage": "two dvc repro at once", "seconds": 0, "kill_points": [], "killed": [], "matched": matched,
            "differs": [] if matched else [r[1][-300:] for r in results]}  # fmt: skip


def disk_faults(work: Path) -> list[dict]:
    """extract on a tmpfs too small for a second store, then on the same tmpfs remounted read-only."""
    repo = work / "reference"
    mount = work / "small_disk"
    mount.mkdir(exist_ok=True)
    size = sum(p.stat().st_size for p in (repo / "data/tracks/dwpose.zarr").rglob("*") if p.is_file())
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={int(size * 1.5) + 65536}", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:  # fmt: skip
        return [{"stage": "full disk / read-only (no tmpfs mount here: skipped)", "seconds": 0, "kill_points": [],
                 "killed": [], "matched": True, "differs": []}]  # fmt: skip
    rows = []
    try:
        shutil.copytree(repo / "data/tracks/dwpose.zarr", mount / "dwpose.zarr")
        before = folder_bytes(mount / "dwpose.zarr")
        for case, remount in (("full disk", None), ("read-only folder", "remount,ro")):
            if remount:
                subprocess.run(["mount", "-o", remount, str(mount)], check=True)
            run = subprocess.run([sys.executable, "-m", "pipeline.extract", "dwpose", "--out", str(mount),
                                  "--workers", "1"], cwd=repo, env=_env(), capture_output=True, text=True)  # fmt: skip
            one_line = run.returncode != 0 and len(run.stderr.strip().splitlines()[-1:]) == 1
            ok = one_line and "Traceback" not in run.stderr and folder_bytes(mount / "dwpose.zarr") == before
            rows.append({"stage": f"extract: {case}", "seconds": 0, "kill_points": [], "killed": [], "matched": ok,
                         "differs": [] if ok else [run.stderr[-400:]]})  # fmt: skip
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)
    return rows


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` by its relative path: two trees compare equal only byte for byte."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def report(rows: list[dict]) -> str:
    lines = [f"{'stage':32} {'s':>6}  kill points (s)            killed  rerun matched"]
    for r in rows:
        points = ", ".join(f"{p:g}" for p in r["kill_points"]) or "-"
        killed = f"{sum(r['killed'])}/{len(r['killed'])}" if r["killed"] else "-"
        lines.append(f"{r['stage']:32} {r['seconds']:>6}  {points:26} {killed:>6}  {'yes' if r['matched'] else 'NO'}"
                     + (f"  differs: {r['differs']}" if not r["matched"] else ""))  # fmt: skip
    tried, killed = sum(len(r["killed"]) for r in rows), sum(sum(r["killed"]) for r in rows)
    lines.append(f"{tried} kill points tried, {killed} landed inside their stage (the others: the stage ended first); "
                 f"{sum(r['matched'] for r in rows)}/{len(rows)} checks matched")  # fmt: skip
    if RWLOCK_REPAIRS:
        lines.append(f"DVC's .dvc/tmp/rwlock left unreadable by a kill {len(RWLOCK_REPAIRS)} time(s): removed, "
                     "then rerun")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=3, help="kill points per stage")
    ap.add_argument("--seed", type=int, default=0, help="chooses the kill points")
    ap.add_argument("--stages", default="", help="comma-separated stages to kill (default: every stage)")
    ap.add_argument("--work", default=None, help="scratch folder (default: a temporary one, removed)")
    args = ap.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="signx-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        rows = kill_sweep(work, [s for s in args.stages.split(",") if s], args.kills, random.Random(args.seed))
        rows += disk_faults(work)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(report(rows))
    return 0 if all(r["matched"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
