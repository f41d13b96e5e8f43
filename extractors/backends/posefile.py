"""Backends that read no video: `posefile` fills the `mediapipe` and `dwpose` tracks from the corpus' pose-format
`.pose` files (the `pose` corpus source), and `none` leaves a track all masked (a corpus without the input a
track needs, or a track a researcher chooses not to run).

`posefile` reads `row["pose"]` with `pipeline.posefile.read_pose_file`: Holistic layouts fill `mediapipe`, OpenPose
layouts `dwpose`; a file without the track's layout gives that utterance all-masked frames (it is not an error: a
Holistic file simply carries no DWPose points), and an unreadable file is a recorded skip naming what is wrong.
"""

from __future__ import annotations

import numpy as np

from extractors import LAYOUTS
from extractors.base import TrackFrames
from extractors.registry import Backend, register
from pipeline.layout import TRACK_ORDER


def masked(track: str, n_frames: int) -> TrackFrames:
    """`n_frames` frames of `track` with nothing detected."""
    return TrackFrames(np.zeros((n_frames, LAYOUTS[track].dims), np.float32), np.zeros(n_frames, bool))


class PoseFileBackend(Backend):
    """The track as a `.pose` file carries it (see the module docstring)."""

    reads = "pose"

    def extract(self, row: dict, index: int) -> TrackFrames:
        from pipeline.posefile import read_pose_file  # pose-format: imported by the runs that read .pose files

        if not row.get("pose"):
            raise ValueError(f"{row['utt_id']}: no .pose file in the manifest (the posefile backend reads the pose "
                             "corpus' files: corpus.source: pose)")  # fmt: skip
        pose = read_pose_file(self.corpus_dir / row["pose"])
        frames = pose.tracks.get(self.track)
        return masked(self.track, pose.n_frames) if frames is None else frames

    def version(self) -> str:
        from importlib.metadata import version

        return f"pose-format {version('pose-format')} .pose reader"


class NoInput(Backend):
    """Every frame masked, reading nothing."""

    reads = "nothing"

    def extract(self, row: dict, index: int) -> TrackFrames:
        return masked(self.track, int(row["n_frames"]))

    def version(self) -> str:
        return "none (all frames masked)"


for _track in ("mediapipe", "dwpose"):
    register(_track, "posefile")(type(f"PoseFile_{_track}", (PoseFileBackend,), {"__doc__": PoseFileBackend.__doc__}))
for _track in TRACK_ORDER:
    register(_track, "none")(type(f"NoInput_{_track}", (NoInput,), {"__doc__": NoInput.__doc__}))
