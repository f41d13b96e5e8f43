"""Export utterances' MediaPipe and DWPose tracks as pose-format `.pose` files, which pose-format's reader and
visualiser (and the tools built on them) open.

    python -m pipeline.export_pose UTT_ID... [--split SPLIT] [--track mediapipe|dwpose|both] [--out exports/pose]

`mediapipe` becomes MediaPipe Holistic's components (POSE_LANDMARKS, LEFT_HAND_LANDMARKS, RIGHT_HAND_LANDMARKS;
XYZC, in pixels of the utterance's video, as pose-format's own Holistic reader writes them); `dwpose` becomes
OpenPose-137's (BODY_25, 70 face points, two hands; XYC). Files are `<out>/<utt_id>.<track>.pose`; reading one
back (`pipeline.posefile`, or the `pose` corpus source) gives the track's values again. Frames without a
detection are written with confidence 0.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from tqdm import tqdm

from extractors.base import TrackFrames
from pipeline.corpus.manifest import SPLITS, read_manifest
from pipeline.params import run_cli
from pipeline.posefile import write_pose_file
from pipeline.store import FrameStore

EXPORTABLE = ("mediapipe", "dwpose")


def export_pose(
    utt_ids: list[str], tracks: tuple[str, ...], corpus: str | os.PathLike, tracks_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
) -> list[Path]:  # fmt: skip
    """Write `<out_dir>/<utt_id>.<track>.pose` for every utterance and track; returns the files written."""
    manifest = read_manifest(corpus).set_index("utt_id")
    if unknown := [u for u in utt_ids if u not in manifest.index]:
        raise ValueError(f"not in the corpus manifest: {unknown[:5]}{' ...' if len(unknown) > 5 else ''}")
    stores = {}
    for track in tracks:
        path = Path(tracks_dir) / f"{track}.zarr"
        if not path.exists():
            raise FileNotFoundError(f"no {track} track at {path}: run `dvc repro extract@{track}` first")
        stores[track] = FrameStore(path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for utt in tqdm(utt_ids, desc="export .pose", unit="utt", disable=len(utt_ids) < 10):
        row = manifest.loc[utt]
        width, height = _size(row, utt)
        for track, store in stores.items():
            frames = TrackFrames(store.read(utt, "values"), store.read(utt, "mask").astype(bool))
            path = out_dir / f"{utt}.{track}.pose"
            write_pose_file(path, track, frames, float(row["fps"]), width, height)
            written.append(path)
    return written


def _size(row, utt: str) -> tuple[int, int]:
    """The utterance's frame size, which turns the tracks' normalised coordinates into a .pose file's pixels."""
    width, height = row.get("width"), row.get("height")
    if width is None or height is None or not (width > 0 and height > 0):
        raise ValueError(f"{utt}: the manifest gives no frame size (width / height), which a .pose file needs")
    return int(width), int(height)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("utt_ids", nargs="*", help="utterances to export (or --split)")
    ap.add_argument("--split", choices=SPLITS, help="export every utterance of this split")
    ap.add_argument("--track", choices=(*EXPORTABLE, "both"), default="both")
    ap.add_argument("--corpus", default="data/corpus")
    ap.add_argument("--tracks", default="data/tracks", help="the folder of extracted track stores")
    ap.add_argument("--out", default="exports/pose")
    args = ap.parse_args(argv)
    try:
        ids = list(args.utt_ids)
        if args.split:
            manifest = read_manifest(args.corpus)
            ids += manifest.loc[manifest["split"] == args.split, "utt_id"].tolist()
        if not ids:
            raise ValueError("name utterances to export, or a --split")
        tracks = EXPORTABLE if args.track == "both" else (args.track,)
        written = export_pose(ids, tracks, args.corpus, args.tracks, args.out)
    except (OSError, ValueError, KeyError) as err:
        raise SystemExit(f"export_pose: {err}") from None
    print(f"export_pose: {len(written)} files in {args.out}")


if __name__ == "__main__":
    run_cli(main)
