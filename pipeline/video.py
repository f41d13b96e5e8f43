"""Video frames for Stage II: decode, resize and subsample a video once, keep the result in an on-disk cache.

Decoding an mp4 costs far more than the small ViT that reads it, so each video is decoded once (by a pool of
threads, `FrameCache.fill`) into a uint8 `(T, H, W, 3)` array under `data/frame_cache/`; every later epoch and
the evaluation read that array back (a memory map). A cache entry is keyed by the video's path, size and
modification time and by the frame settings, so a changed video or setting is decoded again, never read stale.
Writes are atomic (temporary file, then rename): a killed run leaves no half-written entry.
"""

from __future__ import annotations

import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pipeline.corpus.manifest import read_manifest
from pipeline.data import Utterance, collate, load_split
from pipeline.videoio import VideoError, read_frames
from pipeline.vocab import EOS, Vocab


@dataclass(frozen=True)
class FrameSpec:
    """How frames are prepared: square `size` pixels (INTER_AREA resize of the whole frame), every `stride`-th
    frame (the Stage I checkpoint's `frame_stride`, so video frames line up with pose frames), at most
    `max_frames`."""

    size: int = 64
    stride: int = 1
    max_frames: int = 1024


def read_video(path: str | os.PathLike, spec: FrameSpec) -> np.ndarray:
    """(T, size, size, 3) uint8 RGB frames of a video file, as `spec` prepares them (`pipeline.videoio`). Raises
    VideoError for a missing, corrupt or empty video."""
    return read_frames(path, spec.stride, spec.max_frames, spec.size)


class FrameCache:
    """Decoded frames on disk, one `.npy` per video and frame spec.

    Args:
        root: cache folder (created on first write); safe to delete at any time.
        spec: frame size, stride and limit.
    """

    def __init__(self, root: str | os.PathLike, spec: FrameSpec):
        self.root = Path(root) / f"{spec.size}px-stride{spec.stride}-max{spec.max_frames}"
        self.spec = spec

    def path_for(self, video: str | os.PathLike) -> Path:
        video = Path(video).resolve()
        st = video.stat() if video.exists() else None
        key = f"{video}|{st.st_size if st else -1}|{st.st_mtime_ns if st else -1}"
        return self.root / f"{video.stem}-{hashlib.sha1(key.encode()).hexdigest()[:12]}.npy"

    def get(self, video: str | os.PathLike) -> np.ndarray:
        """The frames of `video`, decoded now if they are not cached yet (then cached)."""
        path = self.path_for(video)
        if path.exists():
            return np.load(path, mmap_mode="r")
        frames = read_video(video, self.spec)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, frames)
        os.replace(tmp, path)
        return frames

    def fill(self, videos: list[str | os.PathLike], workers: int | None = None, desc: str = "decode") -> dict[str, str]:
        """Decode every uncached video with `workers` threads; returns {video: reason} for those that failed.

        Threads, not processes: OpenCV releases the GIL while it decodes and resizes, and a thread costs nothing to
        start, while a spawned process re-imports the stage's modules (torch, timm: about 5 s per pool, more than
        decoding the default corpus's test videos takes; measured in docs/VIDEO2POSE.md)."""
        todo = list(dict.fromkeys(str(v) for v in videos if not self.path_for(v).exists()))
        failed: dict[str, str] = {}
        if not todo:
            return failed
        workers = workers or int(os.environ.get("SIGNX_WORKERS", 0)) or os.cpu_count() or 1
        workers = max(1, min(workers, len(todo)))
        jobs = [(self, v) for v in todo]
        with ThreadPoolExecutor(workers) if workers > 1 else nullcontext() as pool:
            results = pool.map(_cache_one, jobs) if pool else map(_cache_one, jobs)
            for video, err in tqdm(results, total=len(todo), desc=desc, unit="video", mininterval=2.0):
                if err:
                    failed[video] = err
        return failed


def _cache_one(job: tuple[FrameCache, str]) -> tuple[str, str | None]:
    cache, video = job
    try:
        cache.get(video)
        return video, None
    except VideoError as err:
        return video, str(err)


# Stage II clips: an utterance's video frames with its pose targets from the fused store (when training) and glosses


@dataclass
class Clip:
    utt_id: str
    video: str
    n_frames: int  # frames after stride, equal to the pose targets' length when there are targets
    target: np.ndarray  # (L,) int64: gloss ids then EOS
    glosses: str
    features: np.ndarray | None = None  # (n_frames, 1959) float32 pose targets as Stage I reads them; None: inference
    track_mask: np.ndarray | None = None  # (n_frames, 5) bool: which tracks were really extracted
    # Stage I's log-probabilities reading `features` (the Stage II distillation targets), when attached:
    teacher_text: np.ndarray | None = None  # (L, V) its decoder's, teacher-forced on `target`
    teacher_ctc: np.ndarray | None = None  # (n_frames, V) its CTC head's


def load_clips(
    corpus: str | os.PathLike,
    vocab: Vocab,
    split: str,
    cache: FrameCache,
    features: str | os.PathLike | None = None,
    data_options: dict | None = None,
    max_len: int = 64,
    decode_workers: int | None = None,
) -> tuple[list[Clip], dict[str, str]]:
    """The clips of one split and {utt_id: reason} for the utterances skipped (corrupt or empty video, or a
    video whose frame count disagrees with its pose frames).

    Args:
        features: the fused store to take pose targets from (training); None reads only the videos (inference).
        data_options: Stage I's `load_split` keywords (tracks, frame_stride, max_frames), so targets and frames
            are sampled alike.
    """
    manifest = read_manifest(corpus)
    rows = manifest[manifest["split"] == split]
    videos = [str(Path(corpus) / v) for v in rows["video"]]
    failed = cache.fill(videos, decode_workers, desc=f"decode {split}")
    targets = {}
    if features is not None:
        for u in load_split(features, corpus, vocab, split, max_len=max_len, **(data_options or {})):
            targets[u.utt_id] = u
    clips, skipped = [], {}
    for utt_id, video, glosses in zip(rows["utt_id"], videos, rows["glosses"]):
        if video in failed:
            skipped[utt_id] = failed[video]
            continue
        n = len(cache.get(video))
        ids = np.array(vocab.encode(glosses)[: max_len - 1] + [EOS])
        clip = Clip(utt_id, video, n, ids, glosses)
        if features is not None:
            u = targets[utt_id]
            if abs(len(u.features) - n) > 1:  # one frame of slack: containers differ on a trailing frame
                skipped[utt_id] = f"{video}: {n} frames at stride {cache.spec.stride}, the feature store has "
                skipped[utt_id] += f"{len(u.features)}"
                continue
            clip.n_frames = n = min(n, len(u.features))
            clip.features, clip.track_mask = u.features[:n], u.track_mask[:n]
        clips.append(clip)
    return clips, skipped


def clip_frames(clips: list[Clip], cache: FrameCache) -> list[np.ndarray]:
    """Each clip's (n_frames, H, W, 3) uint8 frames from the cache (decoded now if missing)."""
    return [np.asarray(cache.get(c.video)[: c.n_frames]) for c in clips]


class FrameDataset(torch.utils.data.Dataset):
    """Cached frames of clips, for a DataLoader (its workers read the cache, decoding any video not yet in it)."""

    def __init__(self, clips: list[Clip], cache: FrameCache):
        self.clips = [Clip(c.utt_id, c.video, c.n_frames, c.target, c.glosses) for c in clips]  # no targets to pickle
        self.cache = cache

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> np.ndarray:
        return clip_frames([self.clips[i]], self.cache)[0]


def pad_frames(frames: list[np.ndarray]) -> dict[str, torch.Tensor]:
    """uint8 clips (T_i, H, W, 3) -> frames (B, T, H, W, 3) uint8 and frame_pad (B, T), True where padding."""
    T = max(len(f) for f in frames)
    out = torch.zeros((len(frames), T, *frames[0].shape[1:]), dtype=torch.uint8)
    pad = torch.ones(len(frames), T, dtype=torch.bool)
    for b, f in enumerate(frames):
        out[b, : len(f)].numpy()[:] = f  # through numpy: f may be a read-only memory map of the cache
        pad[b, : len(f)] = False
    return {"frames": out, "frame_pad": pad}


def collate_clips(clips: list[Clip], frames: list[np.ndarray] | None = None) -> dict[str, torch.Tensor]:
    """A training batch: pose targets `features` (B, T, 1959), track_mask (B, T, 5), frame_pad (B, T), targets
    (B, L) (Stage I's `collate`), the attached Stage I log-probabilities teacher_text (B, L, V) / teacher_ctc
    (B, T, V) when the clips have them, and the padded frames (B, T, H, W, 3) when `frames` is given."""
    batch = collate([Utterance(c.utt_id, c.features, c.track_mask, c.target, c.glosses) for c in clips])
    L, T = batch["targets"].shape[1], batch["frame_pad"].shape[1]
    if clips[0].teacher_text is not None:
        batch["teacher_text"] = _pad_rows([c.teacher_text for c in clips], L)
    if clips[0].teacher_ctc is not None:
        batch["teacher_ctc"] = _pad_rows([c.teacher_ctc for c in clips], T)
    if frames is not None:
        batch |= pad_frames(frames)  # its frame_pad is the same: a clip's frames are its n_frames pose frames
    return batch


def _pad_rows(arrays: list[np.ndarray], length: int) -> torch.Tensor:
    """(n_i, V) float arrays -> (B, length, V), zero past each n_i (padding positions are never read)."""
    out = torch.zeros(len(arrays), length, arrays[0].shape[-1])
    for b, a in enumerate(arrays):
        out[b, : len(a)] = torch.from_numpy(a)
    return out


def colour_jitter(
    frames: torch.Tensor, strength: float, generator: torch.Generator, frame_pad: torch.Tensor | None = None
) -> torch.Tensor:
    """Training-time photometric augmentation, one draw per clip (so the jitter never flickers between frames):
    per-channel gain in [1 - s, 1 + s] (skin tone, clothing, white balance), contrast about the clip's mean grey in
    [1 - s, 1 + s] and a brightness shift in [-s/2, s/2] of the full range. Geometry is unchanged (the pose targets
    are in image coordinates; `geometric_jitter` moves clips). frames (B, T, H, W, 3) uint8 -> the same shape and
    dtype; with `frame_pad` (B, T) only the real frames are read (the mean grey) and changed, padding stays as is."""
    if strength <= 0:
        return frames
    B, T = frames.shape[:2]

    def draw(*shape: int) -> torch.Tensor:
        return (torch.rand(B, *shape, generator=generator) * 2 - 1).to(frames.device)

    gain = 1 + strength * draw(1, 1, 3)  # (B, 1, 1, 3)
    contrast = 1 + strength * draw(1, 1, 1)
    brightness = 0.5 * strength * draw(1, 1, 1)
    real = torch.ones(B, T, dtype=torch.bool, device=frames.device) if frame_pad is None else ~frame_pad  # (B, T)
    clip = torch.arange(B, device=frames.device).unsqueeze(1).expand(B, T)[real]  # (N,) each real frame's clip
    x = frames[real].float().div_(255.0)  # (N, H, W, 3), in place from here: this runs at every training step
    grey = torch.zeros(B, device=frames.device).index_add_(0, clip, x.mean(dim=(1, 2, 3)))
    grey = (grey / real.sum(1).clamp(min=1))[clip].view(-1, 1, 1, 1)  # the clip's mean over its real frames
    x.mul_(gain[clip]).sub_(grey).mul_(contrast[clip]).add_(grey).add_(brightness[clip])
    out = frames.clone()
    out[real] = x.clamp_(0, 1).mul_(255).round_().to(torch.uint8)
    return out


def geometric_jitter(
    frames: torch.Tensor,
    strength: float,
    generator: torch.Generator,
    p: float = 0.5,
    frame_pad: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training-time framing augmentation: each clip, with probability `p`, is shifted by up to `strength` of the
    frame in x and y and scaled by a factor in [1 - strength, 1 + strength], one draw per clip (bilinear, border
    pixels repeated). Its pose targets, in image coordinates, no longer match it, so the caller drops those clips
    from the reconstruction loss and keeps the losses through Stage I (the glosses do not move with the camera).
    frames (B, T, H, W, 3) uint8 -> the same shape and dtype, and moved (B,) bool: the clips that were changed. With
    `frame_pad` (B, T) padding frames are left as they are (not resampled)."""
    B, T, H, W, C = frames.shape
    # always the same draws, whatever is moved: a resumed run stays on the same random stream
    moved = torch.rand(B, generator=generator) < p
    shift = (torch.rand(B, 2, generator=generator) * 2 - 1) * 2 * strength  # grid units: the frame spans [-1, 1]
    scale = 1 + (torch.rand(B, generator=generator) * 2 - 1) * strength
    if strength <= 0 or not moved.any():
        return frames, torch.zeros(B, dtype=torch.bool, device=frames.device)
    moved = moved.to(frames.device)
    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale  # sampling grid: a scale > 1 zooms in
    theta[:, :, 2] = shift
    resample = moved.unsqueeze(1).expand(B, T)  # (B, T): the frames to resample
    if frame_pad is not None:
        resample = resample & ~frame_pad
    theta = theta.to(frames.device).unsqueeze(1).expand(B, T, 2, 3)[resample]  # (N, 2, 3)
    x = frames[resample].permute(0, 3, 1, 2).float()  # (N, 3, H, W)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    x = torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    out = frames.clone()
    out[resample] = x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    return out, moved
