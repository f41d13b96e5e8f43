"""The real DWPose backend on ONNX Runtime, with tiny ONNX models of the real signatures whose answers are planted:
a detector that sees a person where a red box is, and a pose model whose SimCC peaks at the crop's green dot."""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

from extractors import dwpose, wholebody
from extractors.backends.dwpose_onnx import DWPoseONNX
from extractors.runtime import BackendSetupError
from extractors.signer import follow_signer
from tests.tiny_models import (
    PlantedPerson,
    TinyDetector,
    draw_people,
    dwpose_models,
    export_onnx,
    planted_offset,
    planted_scales,
)

W, H = 320, 240  # frame size: the letterbox ratio is min(640 / 240, 640 / 320) = 2
SIGNER = PlantedPerson((100, 40, 200, 230), score=0.7)
OTHER = PlantedPerson((230, 100, 300, 200), score=1.0)  # scores higher than the signer whenever it is there
CAR = PlantedPerson((20, 150, 80, 230), score=0.9, label=2)  # not a person: never a candidate
DOT = (150, 120)  # the signer's green dot: every keypoint is planted relative to it
OTHER_DOT = (265, 150)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    return dwpose_models(tmp_path_factory.mktemp("dwpose"), [SIGNER, OTHER, CAR], ratio=2.0)


def _backend(models, corpus_dir: Path = Path("."), **options) -> DWPoseONNX:
    det, pose = models
    opts = {**DWPoseONNX.options, "detector": str(det), "pose_model": str(pose), "device": "cpu", **options}
    return DWPoseONNX(opts, corpus_dir, 0)


def _frame(people, dots) -> np.ndarray:
    return draw_people(np.zeros((H, W, 3), np.uint8), people, dots)


def _expected_keypoints(box, dot) -> np.ndarray:
    """(133, 3) where the documented crop puts the planted keypoints back in frame pixels, with their scores."""
    box = np.array(box, np.float64)
    w, h = (box[2:] - box[:2]) * 1.25
    scale_w = max(w, h * 288 / 384)  # the crop widened to 288 / 384
    k = 288 / scale_w  # crop pixels per frame pixel
    green = (255 - 116.28) / 57.12  # the dot's normalised green: the SimCC maximum before the planted factor
    out = np.zeros((133, 3))
    for i in range(133):
        (dx, dy), (fx, fy) = planted_offset(i), planted_scales(i)
        out[i] = [dot[0] + dx / k, dot[1] + dy / k, min(fx, fy) * green]
    return out


def test_detector_finds_the_planted_person_boxes_in_frame_pixels(models):
    backend = _backend(models)
    boxes, scores = backend.detect(_frame([SIGNER, OTHER, CAR], []))
    order = np.argsort(boxes[:, 0])
    assert boxes[order] == pytest.approx(np.array([SIGNER.box, OTHER.box]), abs=1e-3)  # the car is not a person
    assert scores[order] == pytest.approx([0.7, 1.0], abs=0.02)
    boxes, _ = backend.detect(_frame([OTHER], []))
    assert boxes == pytest.approx(np.array([OTHER.box]), abs=1e-3)


def test_letterbox_pastes_top_left_on_114_and_the_frame_is_fed_as_rgb(models):
    frame = _frame([SIGNER], [])
    image, ratio = wholebody.letterbox(frame)
    assert ratio == 2.0 and image.shape == (3, 640, 640)
    assert (image[:, 480:, :] == 114).all() and image[0, 100, 250] == 255 and image[2, 100, 250] == 0
    bgr = frame[..., ::-1].copy()  # fed in the wrong colour order, the red signer is blue: no one is detected
    assert len(_backend(models).detect(bgr)[0]) == 0


def test_keypoints_come_back_at_the_planted_image_coordinates(models):
    backend = _backend(models)
    frame = _frame([SIGNER], [DOT])
    boxes, _ = backend.detect(frame)
    centre, scale = wholebody.crop_geometry(boxes[0], 288, 384)
    crop = wholebody.crop_for_pose(frame, centre, scale, 288, 384)
    kp = backend.estimate(crop[None], [(centre, scale)])[0]
    want = _expected_keypoints(SIGNER.box, DOT)
    assert np.abs(kp[:, :2] - want[:, :2]).max() <= 1.0  # within one pixel after the affine inversion
    # the score is the smaller of the two SimCC maxima: both are the dot's green in the crop (blurred below 255 by
    # the warp) times the planted factors, so score / min(factors) is that one value for every keypoint
    peak = kp[:, 2] / np.array([min(planted_scales(i)) for i in range(133)])
    assert peak == pytest.approx(np.full(133, peak[0]), rel=1e-5) and 0 < peak[0] <= want[0, 2] / min(planted_scales(0))


def test_wholebody_to_track_order_openpose_neck_face_hands():
    kp = np.zeros((1, 133, 3))
    kp[0, :, 0] = np.arange(133)  # x = the COCO-WholeBody index
    kp[0, :, 2] = 0.9
    kp[0, 5, :2] = [10, 20]
    kp[0, 6, :2] = [30, 40]
    out = wholebody.to_track_points(kp)[0]
    assert out.shape == (128, 3)
    openpose = [0, 20, 30, 8, 10, 10, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3]  # shoulders' x: 10 (left), 30
    assert out[:18, 0].tolist() == openpose
    assert out[1].tolist() == pytest.approx([20, 30, 0.9])  # the neck: the shoulders' midpoint
    assert out[18:86, 0].tolist() == list(range(23, 91))  # face
    assert out[86:107, 0].tolist() == list(range(91, 112)) and out[107:, 0].tolist() == list(range(112, 133))
    kp[0, 6, 2] = 0.2  # a shoulder too weak: no neck
    assert wholebody.to_track_points(kp)[0, 1].tolist() == [0, 0, 0]


def test_signer_is_followed_not_the_best_scoring_person():
    signer = np.array([100, 40, 200, 230.0])
    interloper = np.array([190, 30, 310, 235.0])  # larger and higher-scoring, listed first
    frames = [[signer], [interloper, signer + 3], [interloper], [interloper, signer + 6], []]
    picks = follow_signer([np.array(f).reshape(-1, 4) for f in frames], W, H)
    assert picks == [0, 1, None, 1, None]
    central = follow_signer([np.array([[0, 0, 60, 60], [110, 70, 210, 170.0], [250, 0, 320, 240]])], W, H)
    assert central == [1]  # the start: the largest box weighted by how central it is


def _video(path: Path, frames: list[np.ndarray]) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (W, H))
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def test_extract_a_video_follows_the_signer_and_masks_frames_without_one(models, tmp_path):
    frames = [_frame([SIGNER], [DOT]), _frame([SIGNER], [DOT])]
    frames += [_frame([SIGNER, OTHER], [DOT, OTHER_DOT]) for _ in range(3)] + [_frame([], [])]
    _video(tmp_path / "clip.mp4", frames)
    row = {"utt_id": "clip", "video": "clip.mp4", "n_frames": 6, "width": W, "height": H}
    out = _backend(models, tmp_path, batch_size=4).extract(row, 0)  # chunks of 4 and 2: the signer carried over
    assert out.values.shape == (6, 384) and out.mask.tolist() == [True] * 5 + [False]
    assert (out.values[5] == 0).all()
    kp = out.values.reshape(6, 128, 3)
    want = wholebody.to_track_points(_expected_keypoints(SIGNER.box, DOT)[None])[0]
    want[:, 0] /= W
    want[:, 1] /= H
    body = [i for i in range(128) if i != 1]  # the neck exists only where the video's blur left both shoulders > 0.3
    assert np.abs(kp[:5, body, 0] - want[body, 0]).max() * W <= 2.0  # lossy video: within two pixels
    assert np.abs(kp[:5, body, 1] - want[body, 1]).max() * H <= 2.0
    right_wrist = dwpose.LAYOUT.dim_names.index("dwpose.right_hand.wrist.score") // 3
    assert (kp[:5, right_wrist, 2] > 0).all() and (kp[:5, right_wrist, 2] <= want[107, 2]).all()


def test_missing_wrong_and_foreign_model_files_name_the_param(models, tmp_path):
    with pytest.raises(BackendSetupError, match=r"dwpose.options.detector: .*nope.onnx does not exist.*yolox_l"):
        _backend(models, detector=str(tmp_path / "nope.onnx"))
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    evil = tmp_path / "evil.onnx"
    evil.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(BackendSetupError, match="dwpose.options.pose_model: .*not an ONNX model"):
        _backend(models, pose_model=str(evil))
    assert not marker.exists()
    small = export_onnx(TinyDetector([SIGNER], 1.0), tmp_path / "small.onnx", (1, 3, 320, 320), ["output"], False)
    wrong = r"takes input \[1,3,320,320\].*expected inputs input0 \[\?,3,640,640\]"
    with pytest.raises(BackendSetupError, match=wrong):
        _backend(models, detector=str(small))
    with pytest.raises(BackendSetupError, match=r"dwpose.options.pose_model: .*gives output \[1,8400,85\]"):
        _backend(models, pose_model=str(models[0]))
    with pytest.raises(BackendSetupError, match="batch_size must be >= 1"):
        _backend(models, batch_size=0)


def test_version_and_weights_hash_name_what_ran(models):
    backend = _backend(models)
    assert "onnxruntime" in backend.version() and "yolox_l.onnx" in backend.version()
    assert backend.weights_hash() is not None and len(backend.weights_hash()) == 64
