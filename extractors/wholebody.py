"""DWPose's two-stage whole-body pose, as numbers in and out of its two ONNX models (IDEA-Research/DWPose,
`annotator/dwpose/onnxdet.py`, `onnxpose.py`, `wholebody.py`): the YOLOX person detector's letterbox and output
decoding, the pose model's affine crop and SimCC decoding, and COCO-WholeBody 133 -> the 128 points of the
`dwpose` track. No model runtime is imported here (`extractors.backends.dwpose_onnx` runs the models).
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from extractors.signer import iou

DET_SIZE = 640  # YOLOX-L's square input
DET_STRIDES = (8, 16, 32)
PAD_VALUE = 114
POSE_MEAN = np.array([123.675, 116.28, 103.53], np.float32)  # ImageNet, on 0-255 values
POSE_STD = np.array([58.395, 57.12, 57.375], np.float32)
BOX_PADDING = 1.25
SIMCC_SPLIT = 2.0
N_WHOLEBODY = 133


def letterbox(frame: np.ndarray, size: int = DET_SIZE, out: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """(H, W, 3) uint8 -> the detector's (3, size, size) float32 input (0-255, no mean / std) and the resize ratio:
    the frame resized by r = min(size / H, size / W) and pasted at the top-left of a canvas of 114.

    `out`: the input of the previous frame of the same size, to write into (its padding is already in place)."""
    h, w = frame.shape[:2]
    r = min(size / h, size / w)
    new_w, new_h = int(w * r), int(h * r)
    if out is None:
        out = np.full((3, size, size), PAD_VALUE, np.float32)
    for c in range(3):  # channel by channel: the same linear resize, written straight into the (C, H, W) input
        out[c, :new_h, :new_w] = cv2.resize(frame[..., c], (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return out, r


@functools.cache
def _grid(size: int = DET_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(A, 2) anchor cell positions (x, y) and (A, 1) strides of YOLOX's three levels, anchors row-major per level."""
    grids, strides = [], []
    for s in DET_STRIDES:
        n = size // s
        xv, yv = np.meshgrid(np.arange(n), np.arange(n))
        grids.append(np.stack([xv, yv], -1).reshape(-1, 2))
        strides.append(np.full((n * n, 1), s))
    return np.concatenate(grids).astype(np.float32), np.concatenate(strides).astype(np.float32)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes greedy non-maximum suppression keeps, best score first."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    while len(order):
        best, order = order[0], order[1:]
        keep.append(best)
        order = order[iou(boxes[best], boxes[order]) <= iou_threshold]
    return np.array(keep, dtype=np.int64)


def decode_people(
    raw: np.ndarray, ratio: float, score_threshold: float = 0.3, iou_threshold: float = 0.45
) -> tuple[np.ndarray, np.ndarray]:
    """One image's (A, 85) YOLOX output -> person boxes (n, 4) xyxy in the frame's pixels and their scores.

    Each anchor is [cx, cy, w, h, objectness, 80 class scores] relative to its cell: xy = (xy + cell) * stride,
    wh = exp(wh) * stride; score = objectness x person score; boxes above `score_threshold`, NMS at
    `iou_threshold` (only person boxes can suppress person boxes, as in the class-aware NMS upstream)."""
    grid, stride = _grid()
    if raw.shape != (len(grid), 85):
        raise ValueError(f"detector output {raw.shape}, expected ({len(grid)}, 85)")
    scores = raw[:, 4] * raw[:, 5]
    keep = np.flatnonzero(scores > score_threshold)  # decode only these
    xy = (raw[keep, :2] + grid[keep]) * stride[keep]
    wh = np.exp(np.minimum(raw[keep, 2:4], 20.0)) * stride[keep]  # capped: exp of a huge logit is no box
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], 1) / ratio
    scores = scores[keep]
    kept = nms(boxes, scores, iou_threshold)
    return boxes[kept], scores[kept]


def crop_geometry(box: np.ndarray, input_w: int, input_h: int) -> tuple[np.ndarray, np.ndarray]:
    """The pose model's crop of an xyxy box: centre (2,) and scale (2,) (w, h) in frame pixels, padded by 1.25 and
    widened or heightened to the model's aspect ratio input_w / input_h."""
    centre = 0.5 * (box[:2] + box[2:])
    w, h = (box[2:] - box[:2]) * BOX_PADDING
    aspect = input_w / input_h
    scale = np.array([w, w / aspect] if w > h * aspect else [h * aspect, h], np.float64)
    return centre, scale


def crop_for_pose(frame: np.ndarray, centre: np.ndarray, scale: np.ndarray, input_w: int, input_h: int) -> np.ndarray:
    """(H, W, 3) uint8 -> the pose model's (3, input_h, input_w) float32 input: the box [centre +- scale / 2]
    warped (no rotation, linear interpolation) onto the input, then (x - mean) / std."""
    k = input_w / scale[0]  # the same as input_h / scale[1]: the aspect ratio was fixed
    warp = np.array([[k, 0, input_w / 2 - k * centre[0]], [0, k, input_h / 2 - k * centre[1]]])
    crop = cv2.warpAffine(frame, warp, (input_w, input_h), flags=cv2.INTER_LINEAR)
    blob = cv2.dnn.blobFromImage(crop, 1.0, None, tuple(POSE_MEAN.tolist()))[0]  # (3, H, W) float32, x - mean
    blob *= (1.0 / POSE_STD)[:, None, None]
    return blob


def decode_simcc(
    simcc_x: np.ndarray, simcc_y: np.ndarray, centre: np.ndarray, scale: np.ndarray, input_w: int, input_h: int
) -> np.ndarray:
    """One crop's SimCC vectors (K, input_w * 2), (K, input_h * 2) -> (K, 3) keypoints (x, y, score) in frame
    pixels: location = arg-max / split ratio, mapped back through the crop; score = the smaller of the two maxima
    (0 where it is not positive: no keypoint)."""
    loc = np.stack([simcc_x.argmax(1), simcc_y.argmax(1)], 1) / SIMCC_SPLIT  # (K, 2) crop pixels
    score = np.minimum(simcc_x.max(1), simcc_y.max(1))
    xy = loc / np.array([input_w, input_h]) * scale + centre - scale / 2
    return np.concatenate([xy, np.clip(score, 0, None)[:, None]], 1)


# OpenPose-18 body (extractors.dwpose.OPENPOSE18) from COCO-WholeBody's first 17 points; -1 = the neck
_OPENPOSE_FROM_COCO = (0, -1, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)
FACE, LEFT_HAND, RIGHT_HAND = slice(23, 91), slice(91, 112), slice(112, 133)
NECK_VISIBLE = 0.3  # DWPose's visibility threshold: the neck exists only when both shoulders pass it


def to_track_points(kp: np.ndarray) -> np.ndarray:
    """(T, 133, 3) COCO-WholeBody keypoints -> (T, 128, 3) in the track's order: OpenPose-18 body (neck = the
    midpoint of the shoulders, scored by the weaker shoulder, present only when both exceed 0.3), 68 face,
    21 left-hand, 21 right-hand points; the 6 foot points are dropped."""
    if kp.ndim != 3 or kp.shape[1:] != (N_WHOLEBODY, 3):
        raise ValueError(f"expected (T, {N_WHOLEBODY}, 3) keypoints, got {kp.shape}")
    shoulders = kp[:, [5, 6]]
    neck = np.concatenate([shoulders[..., :2].mean(1), shoulders[..., 2].min(1, keepdims=True)], 1)
    neck[(shoulders[..., 2] <= NECK_VISIBLE).any(1)] = 0.0
    body = np.stack([neck if i < 0 else kp[:, i] for i in _OPENPOSE_FROM_COCO], 1)
    return np.concatenate([body, kp[:, FACE], kp[:, LEFT_HAND], kp[:, RIGHT_HAND]], 1)
