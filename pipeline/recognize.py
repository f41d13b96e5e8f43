"""Recognise sign videos and pose files with the trained models: each input to its best gloss sequences, scored.

    python -m pipeline.recognize PATH... [--top-k K] [--json] [--extract] [--params params.yaml]
                                 [--pose2gloss models/pose2gloss/best] [--video2pose models/video2pose/best]

- a `.pose` file (pose-format, any version and layout `pipeline.posefile` reads) goes to Stage I with the tracks
  it carries (MediaPipe from Holistic layouts, DWPose from OpenPose ones); the others are masked, as the default
  Stage I is trained to expect (`pose2gloss.aug_track_subsets`);
- a video goes through Video2Pose and the frozen Stage I (Video2Gloss), as `evaluate@video2gloss` reads the test
  videos; with `--extract`, through the extractors instead (the backends `params.yaml` selects: `auto` is the real
  one of each track, `none` skips a track), then Stage I.

The models are loaded once for all inputs. Decoding is `params.yaml`'s (`decoding`, `temperature`); `--top-k` keeps
the K best finished hypotheses of the beam. Output: one line per input, `PATH<TAB>GLOSSES<TAB>SCORE`, or with
`--json` one JSON object per input (JSON Lines):

    {"input": PATH, "tracks": [TRACKS USED], "frames": N,
     "hypotheses": [{"glosses": "IX-1p LIKE", "score": -0.41}, ...]}      (best first; score: length-normalised
                                                                          log-probability of the beam search)
    {"input": PATH, "error": "MESSAGE"}                                  (an input that could not be read)

An input that cannot be read (unsupported type, unreadable video, a pose file of an unknown layout) is reported on
its own line and the others are recognised; a model that does not match (another layout, no vocabulary, a
Video2Pose trained for another Stage I) stops before any input is read. Exit status 1 when any input failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from extractors import registry
from extractors.runtime import BackendSetupError
from pipeline.checkpoints import ModelFileError, model_paths
from pipeline.data import Utterance, model_input
from pipeline.decoding import DecodeConfig
from pipeline.devices import resolve_device
from pipeline.hashing import sha256_files
from pipeline.layout import FUSED, FusedLayout
from pipeline.nets.pose2gloss import Pose2Gloss
from pipeline.nets.video2pose import Video2Pose
from pipeline.params import load_params, run_cli
from pipeline.recognition import decode_config, nbest, pose2gloss_memory
from pipeline.video import read_video
from pipeline.video2gloss import Video2Gloss, check_teacher
from pipeline.videoio import probe_video
from pipeline.vocab import EOS, SPECIAL_TOKENS, Vocab

POSE_SUFFIXES = (".pose",)
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")


class RecognizeError(ValueError):
    """A model or an input that `recognize` cannot use; its message is the one line the user sees."""


@dataclass
class Result:
    path: str
    model: str = "pose2gloss"  # what read it: pose2gloss (poses, extracted tracks) or video2gloss (Video2Pose)
    tracks: list[str] = field(default_factory=list)
    frames: int = 0
    hypotheses: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None

    def as_json(self) -> dict:
        if self.error:
            return {"input": self.path, "error": self.error}
        hyps = [{"glosses": g, "score": round(s, 4)} for g, s in self.hypotheses]
        return {"input": self.path, "tracks": self.tracks, "frames": self.frames, "hypotheses": hyps}

    def as_line(self) -> str:
        if self.error:
            return f"{self.path}\terror: {self.error}"
        return "\n".join(f"{self.path}\t{g}\t{s:.3f}" for g, s in self.hypotheses)


def load_stage1(path: str | Path, device: torch.device) -> tuple[Pose2Gloss, Vocab, tuple[np.ndarray, np.ndarray]]:
    """Stage I with what reading a user's poses needs (vocabulary, normalisation); RecognizeError otherwise."""
    try:
        model = Pose2Gloss.from_checkpoint(path, device)
    except ModelFileError as err:  # names the file and what is wrong with it
        raise RecognizeError(str(err)) from None
    except (OSError, KeyError, TypeError, RuntimeError) as err:
        raise RecognizeError(f"{path}: not a Stage I model signx can load ({type(err).__name__}: {err})") from None
    spec = model.input_spec
    if not spec.get("vocab") or "norm_mean" not in spec:
        raise RecognizeError(
            f"{path}: this Stage I model was published without its vocabulary and normalisation "
            "(trained before they were kept with it): retrain it (dvc repro train_pose2gloss)"
        )
    vocab = Vocab(tuple(spec["vocab"]))
    if tuple(model.cfg.track_dims) != FUSED.dims:
        raise RecognizeError(f"{path}: it reads the feature layout {list(model.cfg.track_dims)}, not this signx's "
                             f"{list(FUSED.dims)}")  # fmt: skip
    if len(vocab) != model.cfg.vocab_size:
        raise RecognizeError(f"{path}: its vocabulary lists {len(vocab.glosses)} glosses and its weights score "
                             f"{model.cfg.vocab_size - len(SPECIAL_TOKENS)}: its .json and .safetensors are not one "
                             "model")  # fmt: skip
    norm = (np.asarray(spec["norm_mean"], np.float32), np.asarray(spec["norm_std"], np.float32))
    return model, vocab, norm


def pose_utterance(path: Path, model: Pose2Gloss, norm: tuple[np.ndarray, np.ndarray]) -> tuple[Utterance, list[str]]:
    """A `.pose` file as Stage I reads it, and the tracks it carries."""
    from pipeline.posefile import read_pose_file

    pose = read_pose_file(path)
    return fused_utterance(str(path), pose.tracks, pose.n_frames, model, norm), sorted(pose.tracks)


def fused_utterance(name: str, tracks: dict, n_frames: int, model: Pose2Gloss, norm: tuple) -> Utterance:
    """Tracks {name: TrackFrames} of one input -> Stage I's input: the others masked, normalised as in training."""
    values = np.zeros((n_frames, FUSED.width), np.float32)
    mask = np.zeros((n_frames, len(FUSED.tracks)), bool)
    for k, track in enumerate(FUSED.tracks):
        if track in tracks:
            a, b = FUSED.slices[track]
            values[:, a:b], mask[:, k] = tracks[track].values, tracks[track].mask
    layout = FusedLayout(model.cfg.track_names, model.cfg.track_dims)
    options = model.data_options
    x, m = model_input(values, mask, norm, layout, layout.use(options.get("tracks")),
                       int(options.get("frame_stride", 1)), int(options.get("max_frames", 1024)))  # fmt: skip
    return Utterance(name, x, m, np.array([EOS]), "")


class Recognizer:
    """The models, loaded once, and what turns each input into Stage I's input."""

    def __init__(self, params: dict, pose2gloss: str, video2pose: str, extract: bool, device: str = "auto") -> None:
        self.device = resolve_device(device)
        self.model, self.vocab, self.norm = load_stage1(pose2gloss, self.device)
        self.pose2gloss_path, self.model_sha256 = pose2gloss, sha256_files([model_paths(pose2gloss)[0]])
        self.params, self.video2pose_path, self.extract = params, video2pose, extract
        self._video2gloss = None  # loaded with the first video
        self._backends: dict | None = None  # opened with the first video, with --extract

    def utterances(self, paths: list[Path], results: list[Result]) -> list[Utterance | None]:
        """Stage I's input for each path (None where it failed: its result says why)."""
        out: list[Utterance | None] = [None] * len(paths)
        videos = []
        for k, path in enumerate(tqdm(paths, desc="read", unit="input", disable=len(paths) < 10)):
            try:
                suffix = path.suffix.lower()
                if not path.is_file():
                    raise RecognizeError(f"{path}: no such file")
                if suffix in POSE_SUFFIXES:
                    out[k], results[k].tracks = pose_utterance(path, self.model, self.norm)
                elif suffix in VIDEO_SUFFIXES:
                    videos.append(k)
                else:
                    raise RecognizeError(f"{path}: not a video ({', '.join(VIDEO_SUFFIXES)}) nor a .pose file")
            except (OSError, ValueError) as err:  # PoseFileError, VideoError, RecognizeError: that input only
                results[k].error = str(err)
        if videos:
            read = self._extracted if self.extract else self._predicted
            for k, utt, tracks, err in read([paths[k] for k in videos], videos):
                out[k], results[k].tracks, results[k].error = utt, tracks, err
                results[k].model = "pose2gloss" if self.extract else "video2gloss"
        return out

    def _predicted(self, paths: list[Path], ks: list[int]):
        """Videos through Video2Pose (frames prepared as in training): (k, utterance, tracks, error) each."""
        v2g = self._load_video2gloss()
        names, frames, kept = [], [], []
        for path, k in zip(paths, ks):
            try:
                frames.append(read_video(path, v2g.frame_spec))
                names.append(str(path))
                kept.append(k)
            except ValueError as err:  # VideoError: unreadable, empty
                yield k, None, [], str(err)
        for k, utt in zip(kept, v2g.predict_from_frames(names, frames) if frames else []):
            yield k, utt, ["video2pose"], None

    def _load_video2gloss(self) -> Video2Gloss:
        if self._video2gloss is None:
            try:
                v2p = Video2Pose.from_checkpoint(self.video2pose_path, self.device)
            except ModelFileError as err:
                raise RecognizeError(f"{err}; --extract reads videos without it") from None
            except (OSError, KeyError, TypeError, RuntimeError) as err:
                raise RecognizeError(
                    f"{self.video2pose_path}: not a Video2Pose model signx can load "
                    f"({type(err).__name__}: {err}); --extract reads videos without it"
                ) from None
            try:
                check_teacher(v2p, self.video2pose_path, self.model_sha256, self.pose2gloss_path)
            except ModelFileError as err:
                raise RecognizeError(str(err)) from None
            self._video2gloss = Video2Gloss(v2p, self.model)
        return self._video2gloss

    def _extracted(self, paths: list[Path], ks: list[int]):
        """Videos through the extractors `params.yaml` selects: (k, utterance, tracks, error) each."""
        backends = self._open_backends()
        for path, k in zip(paths, ks):
            try:
                n, fps, width, height = probe_video(path)
                row = {"utt_id": path.stem, "video": str(path.resolve()), "n_frames": n, "fps": fps,
                       "width": width, "height": height}  # fmt: skip
                tracks = {t: b.extract(row, k) for t, b in backends.items()}
                yield k, fused_utterance(str(path), tracks, n, self.model, self.norm), sorted(tracks), None
            except (OSError, ValueError, RuntimeError) as err:
                yield k, None, [], str(err)

    def _open_backends(self) -> dict:
        """Each enabled track's backend (params: `<track>.backend`, `auto` = the real one), opened once."""
        if self._backends is None:
            self._backends = {}
            for track in FUSED.tracks:
                section = self.params.get(track) or {}
                if not section.get("enabled", True):
                    continue
                try:
                    cls = registry.resolve(track, section.get("backend", "auto"), synthetic=False)
                    options = registry.backend_options(track, cls, section.get("options") or {})
                    if cls.reads != "nothing":
                        self._backends[track] = cls(options, Path.cwd(), int(self.params.get("seed", 0)))
                except BackendSetupError as err:
                    raise RecognizeError(f"--extract: {err} (or set {track}.backend: none)") from None
        return self._backends

    def decode(self, utterances: list[Utterance], top_k: int, dcfg: DecodeConfig, batch_size: int) -> list:
        """The `top_k` best (glosses, score) of each utterance."""
        return nbest(self.model, pose2gloss_memory(self.model), utterances, self.vocab, dcfg, top_k, batch_size)


def recognize_paths(paths: list[Path], recognizer: Recognizer, params: dict, top_k: int = 1) -> list[Result]:
    """Every input's result, in order; an input that fails carries its error and the others go on. Poses and
    videos are decoded with their own model's `decoding` settings (`decoding.ctc_weight` per model), as evaluated."""
    results = [Result(str(p)) for p in paths]
    utterances = recognizer.utterances(paths, results)
    batch_size = int((params.get("decoding") or {}).get("batch_size", 32))
    for model in ("pose2gloss", "video2gloss"):
        ready = [k for k, u in enumerate(utterances) if u is not None and not results[k].error
                 and results[k].model == model]  # fmt: skip
        if not ready:
            continue
        dcfg = decode_config(params, model)
        if top_k > dcfg.beam_size:
            raise RecognizeError(f"--top-k {top_k}: at most decoding.beam_size ({dcfg.beam_size})")
        decoded = recognizer.decode([utterances[k] for k in ready], top_k, dcfg, batch_size)
        for k, hyps in zip(ready, decoded):
            results[k].frames, results[k].hypotheses = len(utterances[k].features), hyps
    return results


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="+", type=Path, help="videos and .pose files")
    ap.add_argument("--top-k", type=int, default=1, help="hypotheses per input (at most decoding.beam_size)")
    ap.add_argument("--json", action="store_true", help="one JSON object per input (JSON Lines)")
    ap.add_argument("--extract", action="store_true", help="videos through the extractors, not Video2Pose")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--pose2gloss", default="models/pose2gloss/best")
    ap.add_argument("--video2pose", default="models/video2pose/best")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    try:
        params = load_params(args.params)
        if args.top_k < 1:
            raise RecognizeError(f"--top-k {args.top_k}: at least 1")
        recognizer = Recognizer(params, args.pose2gloss, args.video2pose, args.extract, args.device)
        results = recognize_paths(args.paths, recognizer, params, args.top_k)
    except (RecognizeError, OSError, ValueError) as err:
        raise SystemExit(f"recognize: {err}") from None
    for r in results:
        print(json.dumps(r.as_json()) if args.json else r.as_line())
    if any(r.error for r in results):
        sys.exit(1)


if __name__ == "__main__":
    run_cli(main)
