"""The real DWPose backend: DWPose's YOLOX-L person detector and its whole-body pose model `dw-ll_ucoco_384`,
both as ONNX models run by ONNX Runtime (the CUDA execution provider when onnxruntime-gpu is installed and a GPU
is there, the CPU otherwise).

Per video, read in chunks of `batch_size` frames: every frame through the detector (`extractors.wholebody`: the
letterbox, the anchor decoding, NMS), one signer followed across frames (`extractors.signer`), the signer's box of
every frame cropped and the crops batched through the pose model, SimCC decoded to 133 COCO-WholeBody keypoints in
frame pixels, then the 128 points of the `dwpose` track. Frames are fed as RGB, as DWPose's annotator is fed. A
frame where the signer is not found is masked. Keypoint scores are kept as the model gives them (DWPose's own
drawing hides points scoring 0.3 or less; the track keeps them, with their scores).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from extractors import dwpose, wholebody
from extractors.base import TrackFrames
from extractors.registry import Backend, register, sha256_files
from extractors.runtime import (
    BackendSetupError,
    check_signature,
    onnx_session,
    onnx_signature,
    require_path,
    worker_threads,
)
from extractors.signer import SignerTracker
from pipeline.videoio import iter_frames

_WHERE = "DWPose's ONNX models, from https://huggingface.co/yzd-v/DWPose (README: Running the real extractors)"


@register("dwpose", "onnx")
class DWPoseONNX(Backend):
    """DWPose (YOLOX-L + dw-ll_ucoco_384) on ONNX Runtime -> the 384-dim DWPose track."""

    options = {
        "detector": "external/dwpose/yolox_l.onnx",
        "pose_model": "external/dwpose/dw-ll_ucoco_384.onnx",
        "device": "auto",  # auto | cpu | cuda
        "batch_size": 16,  # frames per chunk (and per pose-model batch, when the model's batch size is free)
        "det_score": 0.3,  # person score threshold (DWPose's)
        "nms_iou": 0.45,
    }

    def __init__(self, options: dict, corpus_dir: Path, seed: int) -> None:
        super().__init__(options, corpus_dir, seed)
        self.batch_size = int(options["batch_size"])
        if self.batch_size < 1:
            raise BackendSetupError(f"{self.param('batch_size')} must be >= 1, got {self.batch_size}")
        self.det_score, self.nms_iou = float(options["det_score"]), float(options["nms_iou"])
        self.paths = [
            require_path(self.param("detector"), options["detector"], f"yolox_l.onnx, {_WHERE}"),
            require_path(self.param("pose_model"), options["pose_model"], f"dw-ll_ucoco_384.onnx, {_WHERE}"),
        ]
        self.det = self._open("detector", self.paths[0], str(options["device"]))
        self.pose = self._open("pose_model", self.paths[1], str(options["device"]))
        check_signature(
            self.param("detector"), self.paths[0], *onnx_signature(self.det),
            expected_inputs=[[None, 3, wholebody.DET_SIZE, wholebody.DET_SIZE]], expected_outputs=[[None, 8400, 85]],
        )  # fmt: skip
        self.input_h, self.input_w = self._pose_input_size()
        self._canvas: tuple[tuple, np.ndarray] | None = None  # the last detector input and its frame's shape

    def _open(self, option: str, path: Path, device: str):
        return onnx_session(self.param(option), path, device, worker_threads())

    def _pose_input_size(self) -> tuple[int, int]:
        """(H, W) of the pose model's input, read from the model; its SimCC outputs must be 2 W and 2 H long."""
        inputs, outputs = onnx_signature(self.pose)
        shape = inputs[0][1] if inputs else []
        h, w = (shape[2], shape[3]) if len(shape) == 4 else (None, None)
        if not (isinstance(h, int) and isinstance(w, int)):
            h, w = 384, 288  # a model exported with a free input size: dw-ll_ucoco_384's
        split = int(wholebody.SIMCC_SPLIT)
        check_signature(
            self.param("pose_model"), self.paths[1], inputs, outputs,
            expected_inputs=[[None, 3, h, w]],
            expected_outputs=[[None, wholebody.N_WHOLEBODY, w * split], [None, wholebody.N_WHOLEBODY, h * split]],
        )  # fmt: skip
        return h, w

    def extract(self, row: dict, index: int) -> TrackFrames:
        points, found = [], []
        tracker = None
        chunk: list[np.ndarray] = []
        frames = iter_frames(self.corpus_dir / row["video"])
        for frame in frames:
            if tracker is None:
                height, width = frame.shape[:2]
                tracker = SignerTracker(width, height)
            chunk.append(frame)
            if len(chunk) == self.batch_size:
                self._extract_chunk(chunk, tracker, points, found)
                chunk = []
        if chunk:
            self._extract_chunk(chunk, tracker, points, found)
        kp = wholebody.to_track_points(np.stack(points))  # (T, 128, 3) pixels
        mask = np.array(found)
        values = dwpose.to_vector(kp[:, :18], kp[:, 18:86], kp[:, 86:107], kp[:, 107:], width, height)
        return TrackFrames(values * mask[:, None], mask)

    def _extract_chunk(self, chunk: list, tracker: SignerTracker, points: list, found: list) -> None:
        """Detect, follow the signer and estimate the pose of one chunk of frames; appends (133, 3) keypoints and
        whether the signer was found, per frame."""
        crops, geometry = [], []
        for frame in chunk:
            boxes, _ = self.detect(frame)
            pick = tracker.update(boxes)
            found.append(pick is not None)
            if pick is not None:
                centre, scale = wholebody.crop_geometry(boxes[pick], self.input_w, self.input_h)
                crops.append(wholebody.crop_for_pose(frame, centre, scale, self.input_w, self.input_h))
                geometry.append((centre, scale))
        keypoints = iter(self.estimate(np.stack(crops), geometry)) if crops else iter(())
        points.extend(next(keypoints) if f else np.zeros((wholebody.N_WHOLEBODY, 3)) for f in found[-len(chunk) :])

    def detect(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Person boxes (n, 4) xyxy in frame pixels and scores of one (H, W, 3) RGB frame."""
        same_size = self._canvas is not None and self._canvas[0] == frame.shape
        image, ratio = wholebody.letterbox(frame, out=self._canvas[1] if same_size else None)
        self._canvas = (frame.shape, image)
        raw = self.det.run(None, {self.det.get_inputs()[0].name: image[None]})[0][0]  # (8400, 85)
        return wholebody.decode_people(raw, ratio, self.det_score, self.nms_iou)

    def estimate(self, crops: np.ndarray, geometry: list) -> list[np.ndarray]:
        """(N, 3, H, W) pose-model inputs -> N (133, 3) keypoints in frame pixels."""
        fixed = self.pose.get_inputs()[0].shape[0]
        step = fixed if isinstance(fixed, int) else len(crops)
        names = [o.name for o in self.pose.get_outputs()]
        order = [names.index("simcc_x"), names.index("simcc_y")] if {"simcc_x", "simcc_y"} <= set(names) else [0, 1]
        out = []
        for s in range(0, len(crops), step):
            res = self.pose.run(None, {self.pose.get_inputs()[0].name: crops[s : s + step]})
            simcc_x, simcc_y = res[order[0]], res[order[1]]
            for k, (centre, scale) in enumerate(geometry[s : s + step]):
                out.append(wholebody.decode_simcc(simcc_x[k], simcc_y[k], centre, scale, self.input_w, self.input_h))
        return out

    def max_workers(self) -> int | None:
        return 1 if self.det.get_providers()[0] == "CUDAExecutionProvider" else None

    def version(self) -> str:
        import onnxruntime

        provider = self.det.get_providers()[0]
        return f"onnxruntime {onnxruntime.__version__} ({provider}) DWPose {self.paths[0].name} + {self.paths[1].name}"

    def weights_hash(self) -> str | None:
        return sha256_files(self.paths)
