"""The real SMPLer-X backend: imports what SMPLer-X's own inference script (`main/inference.py`) wrote. SMPLer-X
runs in its own environment (S-Lab non-commercial licence, mmcv / mmdet), so this pipeline only reads its files.

Layout read, per video, in a folder named by the video's file stem under `smplerx.options.output_dir`
(`--output_folder <output_dir>/<stem>`; one file pair per frame and person box SMPLer-X kept):

    <output_dir>/<stem>/smplx/{frame:05}_{bbox_id}.npz   global_orient (1,3), body_pose (21,3), jaw_pose (1,3),
                                                          leye_pose, reye_pose (1,3), left_hand_pose,
                                                          right_hand_pose (15,3): axis-angle, full hand pose
                                                          (and betas, expression, transl, not read)
    <output_dir>/<stem>/meta/{frame:05}_{bbox_id}.json   bbox [x, y, w, h] in frame pixels (and focal, princpt, ...)

`frame` is the number of the input image SMPLer-X read: `--img_path` holds the video's frames as ffmpeg's
`%06d.jpg` numbers them (from 000001: `first_frame`), `--start 1 --end <frame count>` runs them all. When several
people were kept (`--multi_person`, or the largest box switching between people), the signer is followed across
frames by the meta boxes (`extractors.signer`, the rule DWPose follows too); frames without output or without the
signer are masked. A frame number outside the video (before `first_frame` or past its `n_frames`) is an error: the
outputs then come from other frames than the video's (another video, frames split at another rate, or the wrong
`first_frame`), and importing them would put poses on the wrong frames.

Only the signer's npz files are opened, always with `allow_pickle=False` (an npz is never unpickled).
"""

from __future__ import annotations

import json
import re
import zipfile
import zlib
from pathlib import Path

import numpy as np

from extractors import smplerx
from extractors.base import TrackFrames
from extractors.registry import Backend, register
from extractors.runtime import BackendSetupError, require_path
from extractors.signer import follow_signer

_NAME = re.compile(r"^(\d+)_(\d+)\.npz$")
_JOINTS = {"global_orient": 1, "body_pose": 21, "jaw_pose": 1, "leye_pose": 1, "reye_pose": 1,
           "left_hand_pose": 15, "right_hand_pose": 15}  # fmt: skip
_UNREADABLE = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)  # what np.load raises on a bad file
_WHERE = (
    "the folder of SMPLer-X inference outputs, one sub-folder per video named by its file stem, each written by "
    "`python main/inference.py --img_path <frames> --start 1 --end <frame count> --output_folder "
    "<output_dir>/<stem> ...` in SMPLer-X's environment (README: Running the real extractors)"
)


@register("smplerx", "import")
class SMPLerXImport(Backend):
    """SMPLer-X's per-frame SMPL-X parameters -> the 165-dim SMPLer-X track."""

    options = {"output_dir": "external/smplerx", "first_frame": 1}

    def __init__(self, options: dict, corpus_dir: Path, seed: int) -> None:
        super().__init__(options, corpus_dir, seed)
        self.root = require_path(self.param("output_dir"), options["output_dir"], _WHERE, kind="folder")
        value = options["first_frame"]
        if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
            raise BackendSetupError(
                f"{self.param('first_frame')}: {value!r}; set it to the frame number SMPLer-X's output names give "
                "a video's first frame (1 when its frames were split by ffmpeg as %06d.jpg)"
            )
        self.first_frame = int(value)

    def extract(self, row: dict, index: int) -> TrackFrames:
        """The track of one video: its signer's full pose in each of its `n_frames` frames, or a masked frame."""
        folder = self.root / Path(row["video"]).stem
        if not folder.is_dir():
            raise ValueError(f"no SMPLer-X output for {row['video']}: {folder} is not a folder")
        if not (folder / "smplx").is_dir():
            raise ValueError(
                f"no SMPLer-X output for {row['video']}: {folder / 'smplx'} is not a folder (SMPLer-X found nobody "
                "in the video, or its run did not finish)"
            )
        n = int(row["n_frames"])
        people = self._people_per_frame(folder, n)
        boxes = [np.array([box for box, _ in found]).reshape(-1, 4) for found in people]
        picks = follow_signer(boxes, int(row["width"]), int(row["height"]))
        values, mask = np.zeros((n, smplerx.LAYOUT.dims), np.float32), np.zeros(n, bool)
        for t, pick in enumerate(picks):
            if pick is not None:
                values[t], mask[t] = _pose(people[t][pick][1]), True
        return TrackFrames(values, mask)

    def _people_per_frame(self, folder: Path, n_frames: int) -> list[list[tuple[np.ndarray, Path]]]:
        """For each of the video's frames, [(xyxy box, npz path)] of the people SMPLer-X kept, in bbox_id order."""
        first, last = self.first_frame, self.first_frame + n_frames - 1
        found: list[list[tuple[int, np.ndarray, Path]]] = [[] for _ in range(n_frames)]
        for npz in sorted((folder / "smplx").glob("*.npz")):
            match = _NAME.match(npz.name)
            if match is None:
                raise ValueError(f"{npz}: not named {{frame:05}}_{{bbox_id}}.npz as SMPLer-X names its outputs")
            frame, bbox_id = int(match[1]), int(match[2])
            if not first <= frame <= last:
                raise ValueError(
                    f"{npz}: frame {frame} is not a frame of this video ({n_frames} frames, numbered {first} to "
                    f"{last} by {self.param('first_frame')}): the outputs come from other frames than the video's"
                )
            found[frame - first].append((bbox_id, _box(folder / "meta" / f"{npz.stem}.json"), npz))
        return [[(box, npz) for _, box, npz in sorted(people, key=lambda p: p[0])] for people in found]

    def version(self) -> str:
        return "SMPLer-X output import"

    def weights_hash(self) -> str | None:
        return None  # SMPLer-X ran elsewhere: no weights are read here


def _box(meta: Path) -> np.ndarray:
    """The xyxy person box of one SMPLer-X meta json (`bbox` [x, y, w, h] there, in frame pixels)."""
    if not meta.is_file():
        raise ValueError(f"{meta}: missing (SMPLer-X writes a meta json, with the person's box, beside every npz)")
    try:
        content = json.loads(meta.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{meta}: unreadable JSON ({type(err).__name__}: {err})") from err
    if not isinstance(content, dict) or "bbox" not in content:
        raise ValueError(f"{meta}: no bbox (SMPLer-X's meta json has bbox [x, y, w, h])")
    try:
        x, y, w, h = (float(v) for v in content["bbox"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"{meta}: bbox {content['bbox']!r} is not [x, y, w, h] ({err})") from err
    if not np.isfinite([x, y, w, h]).all() or w <= 0 or h <= 0:
        raise ValueError(f"{meta}: bbox {content['bbox']!r} is not a box: [x, y, w, h] must be finite, w and h > 0")
    return np.array([x, y, x + w, y + h])


def _read_npz(npz: Path) -> dict[str, np.ndarray]:
    """The SMPL-X pose arrays present in one SMPLer-X npz, loaded without unpickling anything."""
    try:
        with open(npz, "rb") as f:  # opened here: np.load leaves a path it opened open when the zip is corrupt
            loaded = np.load(f, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise ValueError("a single .npy array, not an npz archive of named arrays")
            with loaded as z:
                return {k: z[k] for k in smplerx.SMPLX_PARAMS if k in z.files}
    except _UNREADABLE as err:
        raise ValueError(f"{npz}: unreadable SMPLer-X output ({type(err).__name__}: {err})") from err


def _pose(npz: Path) -> np.ndarray:
    """One person's 165-dim full pose from one SMPLer-X npz; a missing, misshapen or non-finite array is an error
    naming the file."""
    params = _read_npz(npz)
    if missing := [k for k in smplerx.SMPLX_PARAMS if k not in params]:
        raise ValueError(f"{npz}: SMPL-X parameters missing: {missing}")
    for k, joints in _JOINTS.items():
        a = params[k]
        if a.dtype.kind not in "fiu" or a.size != 3 * joints or a.shape[-1] not in (3, 3 * joints):
            raise ValueError(f"{npz}: {k} is {a.dtype} {a.shape}; expected ({joints}, 3) axis-angle numbers")
        with np.errstate(over="ignore"):  # a float64 beyond float32's range becomes inf: refused below
            params[k] = a.reshape(1, -1).astype(np.float32)
    if bad := [k for k in smplerx.SMPLX_PARAMS if not np.isfinite(params[k]).all()]:
        raise ValueError(f"{npz}: non-finite values in {bad}")
    return smplerx.to_vector(**params)[0]
