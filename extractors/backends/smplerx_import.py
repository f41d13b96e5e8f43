"""The real SMPLer-X backend: imports what SMPLer-X's own inference script wrote (it runs in its own environment:
S-Lab non-commercial licence, mmcv / mmdet).

Layout read, per video, in a folder named by the video's file stem under `smplerx.options.output_dir`:

    <output_dir>/<stem>/smplx/{frame:05}_{bbox_id}.npz   global_orient (1,3), body_pose (21,3), jaw_pose (1,3),
                                                          leye_pose, reye_pose (1,3), left_hand_pose,
                                                          right_hand_pose (15,3): axis-angle, full hand pose
    <output_dir>/<stem>/meta/{frame:05}_{bbox_id}.json   bbox [x, y, w, h] in frame pixels (and focal, princpt, ...)

`frame` is the number of the input image SMPLer-X read (`%06d.jpg` as ffmpeg numbers a video's frames, from
`first_frame`, 1 by default). When several people were found, the signer is followed across frames by their boxes
(`extractors.signer`). Frames without output, without the signer, or numbered beyond the video are masked
(numbers beyond the video are ignored: SMPLer-X was run on more frames than the manifest's clip has).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from extractors import smplerx
from extractors.base import TrackFrames
from extractors.registry import Backend, register
from extractors.runtime import BackendSetupError, require_path
from extractors.signer import SignerTracker

_NAME = re.compile(r"^(\d+)_(\d+)\.npz$")
_WHERE = (
    "the folder of SMPLer-X inference outputs, one sub-folder per video named by its file stem, each written by "
    "`python main/inference.py --img_path <frames> --output_folder <output_dir>/<stem> ...` in SMPLer-X's "
    "environment (README: Running the real extractors)"
)


@register("smplerx", "import")
class SMPLerXImport(Backend):
    """SMPLer-X's per-frame SMPL-X parameters -> the 165-dim SMPLer-X track."""

    options = {"output_dir": "external/smplerx", "first_frame": 1}

    def __init__(self, options: dict, corpus_dir: Path, seed: int) -> None:
        super().__init__(options, corpus_dir, seed)
        self.root = require_path(self.param("output_dir"), options["output_dir"], _WHERE, kind="folder")
        self.first_frame = int(options["first_frame"])
        if self.first_frame < 0:
            raise BackendSetupError(f"{self.param('first_frame')} must be >= 0, got {self.first_frame}")

    def extract(self, row: dict, index: int) -> TrackFrames:
        folder = self.root / Path(row["video"]).stem
        if not (folder / "smplx").is_dir():
            raise ValueError(f"no SMPLer-X output for {row['video']}: {folder / 'smplx'} is not a folder")
        n = int(row["n_frames"])
        people = self._people_per_frame(folder, n)
        tracker = SignerTracker(int(row["width"]), int(row["height"]))
        values, mask = np.zeros((n, smplerx.LAYOUT.dims), np.float32), np.zeros(n, bool)
        for t in range(n):
            found = people.get(t, [])
            pick = tracker.update(np.array([box for box, _ in found]).reshape(-1, 4))
            if pick is not None:
                values[t] = self._pose(found[pick][1])
                mask[t] = True
        return TrackFrames(values, mask)

    def _people_per_frame(self, folder: Path, n_frames: int) -> dict[int, list[tuple[np.ndarray, Path]]]:
        """{frame index: [(xyxy box, npz path)] in bbox_id order} for the frames of the clip."""
        people: dict[int, list[tuple[int, np.ndarray, Path]]] = defaultdict(list)
        for npz in sorted((folder / "smplx").glob("*.npz")):
            match = _NAME.match(npz.name)
            if match is None:
                raise ValueError(f"{npz}: not named {{frame:05}}_{{bbox_id}}.npz as SMPLer-X names its outputs")
            t, bbox_id = int(match[1]) - self.first_frame, int(match[2])
            if 0 <= t < n_frames:
                people[t].append((bbox_id, _box(folder / "meta" / f"{npz.stem}.json"), npz))
        return {t: [(box, npz) for _, box, npz in sorted(found, key=lambda f: f[0])] for t, found in people.items()}

    def _pose(self, npz: Path) -> np.ndarray:
        """One person's 165-dim full pose from one SMPLer-X npz (never unpickled)."""
        try:
            with np.load(npz, allow_pickle=False) as z:
                params = {k: z[k].reshape(1, -1) for k in smplerx.SMPLX_PARAMS if k in z}
        except (OSError, ValueError) as err:
            raise ValueError(f"{npz}: unreadable SMPLer-X output ({err})") from err
        try:
            vec = smplerx.to_vector(**params)[0]
        except ValueError as err:
            raise ValueError(f"{npz}: {err}") from err
        if not np.isfinite(vec).all():
            raise ValueError(f"{npz}: non-finite pose values")
        return vec

    def version(self) -> str:
        return "SMPLer-X output import (smplx/*.npz, meta/*.json)"


def _box(meta: Path) -> np.ndarray:
    """The xyxy person box of one SMPLer-X meta json ([x, y, w, h] there)."""
    try:
        bbox = json.loads(meta.read_text())["bbox"]
        x, y, w, h = (float(v) for v in bbox)
    except FileNotFoundError as err:
        raise ValueError(f"{meta}: missing (every smplx/*.npz has its meta/*.json)") from err
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{meta}: no readable bbox [x, y, w, h] ({type(err).__name__}: {err})") from err
    return np.array([x, y, x + w, y + h])
