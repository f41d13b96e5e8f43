"""The real backends of the `primedepth` track: PrimeDepth's output imported, or a local `transformers` depth model.

Both end in the same per-frame rule (`extractors.maps.depth_track`): the signer is the largest connected region
nearer than Otsu's threshold on the frame's inverse depth; the track is the 24 x 24 mean inverse depth over a
square crop around it, min / max normalised over the crop to [0, 1] (1 = nearest cell, 0 = farthest cell and
outside the image). A frame with no finite value is masked.

- `import`: PrimeDepth writes no files (its `predict()` returns `depth_ssi`, float H x W scale- and
  shift-invariant inverse depth, larger = nearer); the user saves it per video, named by the video's file stem
  under `primedepth.options.depth_dir`, either as `<stem>.npz` holding `depth_ssi` (T, H, W), or as a folder
  `<stem>/` of `%06d.npy` files (H, W) numbered like ffmpeg's frames from `first_frame` (1). Missing frames,
  and frames beyond a shorter npz, are masked.
- `depth_model`: any `transformers` depth-estimation model saved in a local folder (e.g. Depth Anything V2), for
  users who cannot run PrimeDepth's Stable Diffusion stack. `prediction: inverse_depth` for models that predict
  relative inverse depth (Depth Anything, DPT), `depth` for metric-depth models (ZoeDepth, GLPN: nearness = 1 /
  depth). The prediction is resized to the frame by the model's own image processor
  (`post_process_depth_estimation`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from extractors import maps
from extractors.base import TrackFrames
from extractors.registry import Backend, register, sha256_files
from extractors.runtime import BackendSetupError, require_path, torch_device, torch_dtype, worker_threads
from pipeline.videoio import iter_frames


def depth_frames(nearness: list[np.ndarray | None], n_frames: int) -> TrackFrames:
    """Per-frame (H, W) nearness maps (None: no map) -> the track, `n_frames` long (frames past the list masked)."""
    values = np.zeros((n_frames, maps.MAP_SIZE * maps.MAP_SIZE), np.float32)
    mask = np.zeros(n_frames, bool)
    for t, frame in enumerate(nearness[:n_frames]):
        if frame is not None:
            cells, mask[t] = maps.depth_track(frame)
            values[t] = maps.depth_to_vector(cells[None])[0] * mask[t]
    return TrackFrames(values, mask)


@register("primedepth", "import")
class PrimeDepthImport(Backend):
    """PrimeDepth's saved `depth_ssi` -> the 576-dim depth track."""

    options = {"depth_dir": "external/primedepth", "first_frame": 1}

    def __init__(self, options: dict, corpus_dir: Path, seed: int) -> None:
        super().__init__(options, corpus_dir, seed)
        where = ("PrimeDepth's depth_ssi saved per video as <stem>.npz (key depth_ssi, T x H x W) or <stem>/%06d.npy "
                 "(README: Running the real extractors)")  # fmt: skip
        self.root = require_path(self.param("depth_dir"), options["depth_dir"], where, kind="folder")
        self.first_frame = int(options["first_frame"])

    def extract(self, row: dict, index: int) -> TrackFrames:
        stem = Path(row["video"]).stem
        npz, folder = self.root / f"{stem}.npz", self.root / stem
        n = int(row["n_frames"])
        if npz.is_file():
            return depth_frames(list(_npz_frames(npz)), n)
        if folder.is_dir():
            files = [folder / f"{t + self.first_frame:06d}.npy" for t in range(n)]
            return depth_frames([_npy_frame(f) if f.is_file() else None for f in files], n)
        raise ValueError(f"no PrimeDepth output for {row['video']}: neither {npz} nor {folder}/ exists")

    def version(self) -> str:
        return "PrimeDepth depth_ssi import"


def _npz_frames(path: Path) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as z:
            depth = z["depth_ssi"]
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"{path}: no readable depth_ssi array ({type(err).__name__}: {err})") from err
    if depth.ndim != 3:
        raise ValueError(f"{path}: depth_ssi must be (T, H, W), got {depth.shape}")
    return depth


def _npy_frame(path: Path) -> np.ndarray:
    try:
        depth = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: unreadable depth map ({err})") from err
    if depth.ndim != 2:
        raise ValueError(f"{path}: a depth map must be (H, W), got {depth.shape}")
    return depth


@register("primedepth", "depth_model")
class DepthModel(Backend):
    """A local `transformers` depth-estimation model -> the 576-dim depth track."""

    options = {"model_dir": "external/primedepth/depth_model", "prediction": "inverse_depth", "device": "auto",
               "dtype": "auto", "batch_size": 8}  # fmt: skip

    def __init__(self, options: dict, corpus_dir: Path, seed: int) -> None:
        import torch

        super().__init__(options, corpus_dir, seed)
        if worker_threads() > 0:
            torch.set_num_threads(worker_threads())
        self.prediction = str(options["prediction"])
        if self.prediction not in ("inverse_depth", "depth"):
            raise BackendSetupError(f"{self.param('prediction')}: {self.prediction!r}; choose inverse_depth or depth")
        self.batch_size = int(options["batch_size"])
        if self.batch_size < 1:
            raise BackendSetupError(f"{self.param('batch_size')} must be >= 1, got {self.batch_size}")
        self.device = torch_device(str(options["device"]))
        self.dtype = torch_dtype(str(options["dtype"]), self.device)
        self.folder = require_path(self.param("model_dir"), options["model_dir"], _DEPTH_WHERE, kind="folder")
        self.processor, self.model = _load_depth_model(self.param("model_dir"), self.folder)
        self.model.to(self.device, self.dtype).eval()

    def extract(self, row: dict, index: int) -> TrackFrames:
        nearness: list[np.ndarray | None] = []
        batch: list[np.ndarray] = []
        for frame in iter_frames(self.corpus_dir / row["video"]):
            batch.append(frame)
            if len(batch) == self.batch_size:
                nearness += self._predict(batch)
                batch = []
        if batch:
            nearness += self._predict(batch)
        return depth_frames(nearness, len(nearness))  # the frames decoded: `extract` checks them against the manifest

    def _predict(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """RGB frames -> their (H, W) nearness maps at the frames' size."""
        import torch

        inputs = self.processor(images=frames, return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            outputs = self.model(pixel_values=inputs.to(self.device, self.dtype))
            outputs.predicted_depth = outputs.predicted_depth.float()  # (B, h, w)
            sizes = [frame.shape[:2] for frame in frames]
            maps_ = [r["predicted_depth"] for r in self.processor.post_process_depth_estimation(outputs, sizes)]
        out = [m.cpu().numpy().astype(np.float64) for m in maps_]  # (H, W) each
        if self.prediction == "depth":
            out = [np.where(m > 0, 1.0 / np.maximum(m, 1e-12), np.nan) for m in out]
        return out

    def version(self) -> str:
        import transformers

        name = type(self.model).__name__
        return f"transformers {transformers.__version__} {name} ({self.folder.name}) {self.dtype} on {self.device}"

    def weights_hash(self) -> str | None:
        return sha256_files(sorted(p for p in self.folder.iterdir() if p.suffix in (".safetensors", ".bin")))

    def max_workers(self) -> int | None:
        return 1 if self.device.type == "cuda" else None


_DEPTH_WHERE = (
    "a folder holding a transformers depth-estimation model and its image processor (config.json, "
    "preprocessor_config.json, model.safetensors), e.g. depth-anything/Depth-Anything-V2-Small-hf downloaded "
    "elsewhere (README: Running the real extractors)"
)


def _load_depth_model(param: str, folder: Path):
    """(image processor, model) from a local folder only; anything else is an error naming `param`."""
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    if not any(folder.glob("*.safetensors")):
        raise BackendSetupError(f"{param}: {folder} has no *.safetensors weights; expected {_DEPTH_WHERE}")
    try:
        processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
        model = AutoModelForDepthEstimation.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    except (OSError, ValueError, KeyError) as err:
        msg = f"{param}: {folder} is not a loadable depth model ({err}); expected {_DEPTH_WHERE}"
        raise BackendSetupError(msg) from err
    return processor, model
