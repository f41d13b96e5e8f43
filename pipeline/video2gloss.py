"""Video2Gloss: Video2Pose (Stage II) then the frozen Pose2Gloss (Stage I), reading what Video2Pose predicts.

Stage II training, `evaluate@video2gloss` and recognition of new videos all run Stage I on predicted tracks
through this module: the track mask it gives them (`predicted_track_mask`), its teacher-forced outputs
(`stage1_outputs`) and the batched prediction of every clip's tracks (`Video2Gloss.predict_tracks`).
"""

from __future__ import annotations

import os

import numpy as np
import torch
from tqdm import tqdm

from pipeline.checkpoints import ModelFileError, model_paths
from pipeline.data import Utterance, length_batches
from pipeline.devices import autocast, video_attention
from pipeline.hashing import sha256_files
from pipeline.nets.pose2gloss import Pose2Gloss, shift_right
from pipeline.nets.video2pose import Video2Pose
from pipeline.video import Clip, FrameCache, FrameSpec, clip_frames, pad_frames
from pipeline.vocab import EOS


def freeze(model: torch.nn.Module) -> torch.nn.Module:
    """Stage I stays exactly as trained: no gradients, eval mode (no dropout) for good."""
    model.requires_grad_(False)
    return model.eval()


def predicted_track_mask(p2g: Pose2Gloss, frame_pad: torch.Tensor) -> torch.Tensor:
    """(B, T, 5): Video2Pose predicts every track on every real frame; Stage I reads the tracks it was trained on."""
    use = torch.tensor(p2g.tracks_read(), device=frame_pad.device)
    return (~frame_pad).unsqueeze(-1) & use


def stage1_outputs(
    p2g: Pose2Gloss,
    features: torch.Tensor,
    track_mask: torch.Tensor,
    targets: torch.Tensor,
    frame_pad: torch.Tensor,
    text: bool = True,
    ctc: bool = True,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Stage I reading features (B, T, 1959): its decoder's logits (B, L, V) teacher-forced on `targets` when
    `text`, its CTC head's frame logits (B, T, V) when `ctc` and the head was trained; None for what was not asked
    for."""
    f, z0 = p2g.encode(features, track_mask)
    logits = p2g(shift_right(targets), z0, frame_pad) if text else None
    frame_logits = p2g.ctc_head(f) if ctc and p2g.ctc_trained else None
    return logits, frame_logits


class Video2Gloss:
    """Video2Pose then the frozen Stage I: videos -> predicted tracks -> glosses."""

    def __init__(self, video2pose: Video2Pose, pose2gloss: Pose2Gloss) -> None:
        self.video2pose = video2pose.eval()
        self.pose2gloss = freeze(pose2gloss)

    @classmethod
    def from_checkpoints(
        cls, video2pose: str | os.PathLike, pose2gloss: str | os.PathLike, device: torch.device
    ) -> Video2Gloss:
        """The two published models (`models/video2pose/best`, `models/pose2gloss/best`); ModelFileError when
        the Video2Pose was trained against another Stage I (`check_teacher`)."""
        v2p = Video2Pose.from_checkpoint(video2pose, device)
        check_teacher(v2p, video2pose, sha256_files([model_paths(pose2gloss)[0]]), pose2gloss)
        return cls(v2p, Pose2Gloss.from_checkpoint(pose2gloss, device))

    @property
    def frame_spec(self) -> FrameSpec:
        """How its frames are prepared (size, and Stage I's frame stride and limit)."""
        return FrameSpec(**self.video2pose.frame_options)

    def predict_tracks(self, clips: list[Clip], cache: FrameCache, batch_size: int = 32) -> list[Utterance]:
        """Video2Pose on each clip's cached frames: the tracks it predicts (n_frames, 1959), which Stage I then
        reads as it reads extracted ones (every track it was trained on, present on every frame), as Utterances
        in the clips' order."""
        return self._predict(clips, lambda items: clip_frames(items, cache), batch_size)

    def predict_from_frames(self, names: list[str], frames: list[np.ndarray], batch_size: int = 32) -> list[Utterance]:
        """The same for frames already decoded (`pipeline.video.read_video` with `frame_spec`), one array per
        input (`recognize`)."""
        by_name = dict(zip(names, frames))
        clips = [Clip(n, "", len(f), np.array([EOS]), "") for n, f in zip(names, frames)]
        return self._predict(clips, lambda items: [by_name[c.utt_id] for c in items], batch_size)

    @torch.no_grad()
    def _predict(self, clips: list[Clip], frames_of, batch_size: int) -> list[Utterance]:
        """Clips batched by length (as evaluation batches them) through Video2Pose; `frames_of(clips)` gives each
        clip's (T, H, W, 3) frames."""
        device = next(self.video2pose.parameters()).device
        predicted = {}
        for items in tqdm(length_batches(clips, batch_size), desc="video2pose", unit="batch", mininterval=2.0):
            batch = pad_frames(frames_of(items))
            frames, pad = batch["frames"].to(device), batch["frame_pad"].to(device)
            with autocast(device), video_attention(device):
                features = self.video2pose(frames, pad).float().cpu().numpy()  # (B, T, 1959)
            mask = predicted_track_mask(self.pose2gloss, pad).cpu().numpy()  # (B, T, 5)
            for b, c in enumerate(items):
                n = c.n_frames
                predicted[c.utt_id] = Utterance(c.utt_id, features[b, :n], mask[b, :n], c.target, c.glosses)
        return [predicted[c.utt_id] for c in clips]


def check_teacher(
    v2p: Video2Pose, v2p_path: str | os.PathLike, stage1_sha256: str, stage1_path: str | os.PathLike
) -> None:
    """A Video2Pose predicts the tracks of the Stage I it was trained against (`teacher_sha256`, the sha256 of
    its weights); with another Stage I its predictions mean nothing, so the pair is refused."""
    if v2p.teacher_sha256 and v2p.teacher_sha256 != stage1_sha256:
        raise ModelFileError(
            f"{v2p_path} was trained against another Stage I than {stage1_path}: use the pair `dvc repro` "
            "published together"
        )
