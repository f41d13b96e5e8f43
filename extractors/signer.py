"""One signer per video: which of each frame's person boxes is the signer.

A sign video may show other people (an interlocutor, a passer-by, a second signer in a dialogue), and a person
detector's best-scoring box can switch between them from frame to frame. The signer is chosen once and then
followed:

1. the start: in the first frame with a detection, the box with the largest area weighted by how central it is
   (area x (1 - distance of its centre from the image centre / half the image diagonal));
2. each later frame: the box that overlaps the signer's last box most (IoU); when none overlaps by at least
   `min_iou`, the box whose centre is nearest the last box's centre, if it lies within a quarter of the last
   box's diagonal (the box changed shape, e.g. arms stretched out); otherwise the frame has no signer (masked),
   and the last box is kept for the frames after it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MIN_IOU = 0.3


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (4,) xyxy box with each of (n, 4) xyxy boxes -> (n,)."""
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def _centres(boxes: np.ndarray) -> np.ndarray:
    return 0.5 * (boxes[:, :2] + boxes[:, 2:])


def first_signer(boxes: np.ndarray, width: int, height: int) -> int:
    """Index of the start box among (n, 4) xyxy boxes: largest area weighted by centrality."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    off = np.linalg.norm(_centres(boxes) - np.array([width, height]) / 2, axis=1) / (0.5 * np.hypot(width, height))
    return int(np.argmax(area * np.clip(1.0 - off, 0.0, None)))


def next_signer(last: np.ndarray, boxes: np.ndarray, min_iou: float = MIN_IOU) -> int | None:
    """Index of the signer among (n, 4) xyxy `boxes` given the signer's last box, or None (not among them)."""
    overlap = iou(last, boxes)
    if overlap.max() >= min_iou:
        return int(np.argmax(overlap))
    dist = np.linalg.norm(_centres(boxes) - _centres(last[None])[0], axis=1)
    nearest = int(np.argmin(dist))
    return nearest if dist[nearest] <= 0.25 * np.hypot(last[2] - last[0], last[3] - last[1]) else None


class SignerTracker:
    """The rule above, one frame at a time (a video is read in chunks, never held whole)."""

    def __init__(self, width: int, height: int, min_iou: float = MIN_IOU) -> None:
        self.width, self.height, self.min_iou = width, height, min_iou
        self.last: np.ndarray | None = None  # the signer's last box

    def update(self, frame_boxes: np.ndarray) -> int | None:
        """The index of the signer's box among this frame's (n, 4) xyxy boxes (n may be 0), or None."""
        frame_boxes = np.asarray(frame_boxes, dtype=np.float64).reshape(-1, 4)
        if len(frame_boxes) == 0:
            return None
        if self.last is None:
            pick = first_signer(frame_boxes, self.width, self.height)
        else:
            pick = next_signer(self.last, frame_boxes, self.min_iou)
        if pick is not None:
            self.last = frame_boxes[pick]
        return pick


def follow_signer(boxes: Sequence[np.ndarray], width: int, height: int, min_iou: float = MIN_IOU) -> list[int | None]:
    """For each frame's (n_t, 4) xyxy person boxes (n_t may be 0), the index of the signer's box, or None."""
    tracker = SignerTracker(width, height, min_iou)
    return [tracker.update(frame_boxes) for frame_boxes in boxes]
