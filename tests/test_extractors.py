"""Track layouts, simulated backends, and the real MediaPipe Holistic backend."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import extractors
from extractors import dwpose, mediapipe, primedepth, sapiens, smplerx
from extractors.backends import simulated
from extractors.backends._ground_truth import GroundTruth
from extractors.base import HAND21, TrackFrames
from pipeline.corpus.manifest import read_manifest
from pipeline.corpus.motion import Signer
from pipeline.corpus.skeleton import (
    BODY_CAPSULES,
    GOLIATH_CLASSES,
    HEAD_RADII,
    JOINT_NAMES,
    PART,
    P,
    head_centre,
    project,
)
from pipeline.layout import FUSED
from pipeline.store import FrameStore


# --- layouts -------------------------------------------------------------------------------------------------
def test_track_layouts_sum_to_1959_in_paper_order():
    assert extractors.TRACK_ORDER == ("smplerx", "dwpose", "mediapipe", "primedepth", "sapiens")
    dims = {t: extractors.LAYOUTS[t].dims for t in extractors.TRACK_ORDER}
    assert dims == {"smplerx": 165, "dwpose": 384, "mediapipe": 258, "primedepth": 576, "sapiens": 576}
    assert FUSED.width == 1959
    slices = FUSED.slices
    assert slices["smplerx"] == (0, 165) and slices["sapiens"] == (1383, 1959)
    names = [n for t in extractors.TRACK_ORDER for n in extractors.LAYOUTS[t].dim_names]
    assert len(names) == len(set(names)) == 1959


def test_per_dim_names_follow_the_documented_order():
    assert smplerx.LAYOUT.dim_names[:3] == ("smplerx.pelvis.x", "smplerx.pelvis.y", "smplerx.pelvis.z")
    assert smplerx.LAYOUT.dim_names[3 * 22] == f"smplerx.{JOINT_NAMES[22]}.x" == "smplerx.jaw.x"
    assert dwpose.LAYOUT.dim_names[3 * 1 : 3 * 1 + 3] == (
        "dwpose.body.neck.x",
        "dwpose.body.neck.y",
        "dwpose.body.neck.score",
    )
    assert dwpose.LAYOUT.dim_names[3 * 18] == "dwpose.face.0.x"
    assert dwpose.LAYOUT.dim_names[3 * 86] == "dwpose.left_hand.wrist.x"
    assert dwpose.LAYOUT.dim_names[3 * 107] == "dwpose.right_hand.wrist.x"
    assert mediapipe.LAYOUT.dim_names[:4] == tuple(f"mediapipe.pose.nose.{f}" for f in ("x", "y", "z", "visibility"))
    assert mediapipe.LAYOUT.dim_names[132] == "mediapipe.left_hand.wrist.x"
    assert mediapipe.LAYOUT.dim_names[195 + 3 * 20 + 2] == f"mediapipe.right_hand.{HAND21[20]}.z"
    assert primedepth.LAYOUT.dim_names[25] == "primedepth.r01c01"


def test_to_vector_checks_shapes_and_normalises():
    T = 2
    body, face = np.zeros((T, 18, 3)), np.zeros((T, 68, 3))
    hand = np.zeros((T, 21, 3))
    body[:, 0] = [64, 32, 0.9]
    v = dwpose.to_vector(body, face, hand, hand, width=128, height=64)
    assert v.shape == (T, 384) and v[0, :3].tolist() == pytest.approx([0.5, 0.5, 0.9])
    with pytest.raises(ValueError, match=r"face: expected \(T, 68, 3\)"):
        dwpose.to_vector(body, np.zeros((T, 70, 3)), hand, hand, 128, 64)
    with pytest.raises(ValueError, match="SMPL-X parameters missing"):
        smplerx.to_vector(global_orient=np.zeros((T, 3)))
    with pytest.raises(ValueError, match=r"left_hand: expected \(21, 3\)"):
        mediapipe.to_vector(np.zeros((33, 4)), np.zeros((20, 3)), None)
    pose, right = np.arange(132.0).reshape(33, 4) + 1, np.arange(63.0).reshape(21, 3) + 1
    v = mediapipe.to_vector(pose, None, right)  # the left hand not found: 63 zeros, the others in place
    np.testing.assert_array_equal(v[mediapipe.POSE], pose.ravel())
    np.testing.assert_array_equal(v[mediapipe.RIGHT_HAND], right.ravel())
    assert not v[mediapipe.LEFT_HAND].any()
    with pytest.raises(ValueError, match="class ids"):
        sapiens.to_vector(np.full((1, 24, 24), 28))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        primedepth.to_vector(np.full((1, 24, 24), 1.5))
    with pytest.raises(ValueError, match="NaN"):
        TrackFrames(np.full((2, 3), np.nan, np.float32), np.ones(2, bool))


# --- simulated backends --------------------------------------------------------------------------------------
def _ground_truths(corpus, n=6):
    manifest = read_manifest(corpus)
    store = FrameStore(corpus / "skeleton.zarr")
    signers = {s["signer_id"]: Signer.from_dict(s) for s in json.loads((corpus / "signers.json").read_text())}
    rows = manifest.iloc[:: max(1, len(manifest) // n)]
    return [
        GroundTruth(store.read(r.utt_id), signers[r.signer], int(r.width), int(r.height)) for r in rows.itertuples()
    ]


@pytest.mark.parametrize("track", extractors.TRACK_ORDER)
def test_simulated_tracks_have_the_layout_and_no_nans(small_corpus, track):
    _, corpus, _ = small_corpus
    detected = []
    for gt in _ground_truths(corpus):
        out = getattr(simulated, f"simulate_{track}")(gt, np.random.default_rng(0))
        assert out.values.shape == (gt.n_frames, extractors.LAYOUTS[track].dims)
        assert out.values.dtype == np.float32 and np.isfinite(out.values).all()
        assert np.all(out.values[~out.mask] == 0)
        detected += out.mask.tolist()
        again = getattr(simulated, f"simulate_{track}")(gt, np.random.default_rng(0))
        assert again.values.tobytes() == out.values.tobytes()  # seeded
    assert 0.9 < np.mean(detected) <= 1.0


def test_noise_free_dwpose_is_the_exact_projection(small_corpus):
    _, corpus, _ = small_corpus
    gt = _ground_truths(corpus, 1)[0]
    kp = simulated.simulate_dwpose(gt, np.random.default_rng(0), noise=0.0).values.reshape(gt.n_frames, 128, 3)
    uv, _ = gt.uv_depth
    inside = gt.in_frame(uv[:, P["right_wrist"]])
    np.testing.assert_allclose(kp[inside, 4, 0] * gt.width, uv[inside, P["right_wrist"], 0], atol=1e-3)
    np.testing.assert_allclose(kp[:, 18 + 30, :2] * [gt.width, gt.height], uv[:, P["face_30"]], atol=1e-3)  # nose tip
    left_tip = 86 + HAND21.index("index_tip")
    np.testing.assert_allclose(kp[:, left_tip, 1] * gt.height, uv[:, P["left_index_tip"], 1], atol=1e-3)


def test_noise_free_smplerx_is_the_ground_truth_pose(small_corpus):
    _, corpus, _ = small_corpus
    gt = _ground_truths(corpus, 1)[0]
    out = simulated.simulate_smplerx(gt, np.random.default_rng(0), noise=0.0)
    np.testing.assert_allclose(out.values, gt.pose.reshape(gt.n_frames, 165), atol=1e-6)
    noisy = simulated.simulate_smplerx(gt, np.random.default_rng(0), noise=1.0)
    err = np.abs(noisy.values - out.values)[noisy.mask]
    assert 0.01 < err.mean() < 0.2  # a few degrees, not garbage


def test_maps_see_the_body(small_corpus):
    _, corpus, _ = small_corpus
    for gt in _ground_truths(corpus, 3):
        depth = simulated.simulate_primedepth(gt, np.random.default_rng(0), noise=0.0).values.reshape(-1, 24, 24)
        parts = simulated.simulate_sapiens(gt, np.random.default_rng(0), noise=0.0).values.reshape(-1, 24, 24)
        parts = parts.astype(int)
        body = parts > 0
        assert 0.1 < body.mean() < 0.7  # the signer fills part of the crop
        assert depth[body].min() >= 0.2 - 1e-6 and depth.max() <= 1.0
        assert np.all(depth[~body] < 0.25)  # background is far (0), blurred edges aside
        seen = {GOLIATH_CLASSES[i] for i in np.unique(parts)}
        assert {"Background", "Face_Neck", "Upper_Clothing", "Left_Hand", "Right_Hand"} <= seen


def test_map_raster_matches_a_per_pixel_ray_cast(small_corpus):
    """The vectorised ray-cast behind both map tracks against a plain per-pixel one over the same capsules."""
    _, corpus, _ = small_corpus
    gt = _ground_truths(corpus, 1)[0]
    depth, parts = gt.raster()
    uv, z_joint = gt.uv_depth
    box, f = gt.crop_boxes(), gt.camera[:, 0]
    scale = gt.signer.shape.height * gt.signer.shape.girth
    hs = gt.signer.shape.height * gt.signer.shape.head_size
    c_uv, c_z = project(head_centre(gt.points, gt.signer.shape)[:, None], gt.camera)
    for t in (0, gt.n_frames // 2):
        for r, c in np.ndindex(24, 24):
            p = box[t, :2] + (np.array([c, r]) + 0.5) / 24 * box[t, 2:]
            best, part = math.inf, 0
            for cap in BODY_CAPSULES:
                a, b = uv[t, cap.a], uv[t, cap.b]
                s = min(1.0, max(0.0, float(np.dot(p - a, b - a) / (np.dot(b - a, b - a) + 1e-9))))
                dist = math.hypot(*(p - (a + s * (b - a))))
                z = z_joint[t, cap.a] + s * (z_joint[t, cap.b] - z_joint[t, cap.a])
                r_m = (cap.radius_a + s * (cap.radius_b - cap.radius_a)) * scale
                r_px = r_m * f[t] / z
                surface = z - r_m * math.sqrt(max(0.0, 1 - (dist / r_px) ** 2))
                if dist < r_px and surface < best:
                    best, part = surface, cap.part
            dx = (p[0] - c_uv[t, 0, 0]) / (HEAD_RADII[0] * hs * f[t] / c_z[t, 0])
            dy = (p[1] - c_uv[t, 0, 1]) / (HEAD_RADII[1] * hs * f[t] / c_z[t, 0])
            surface = c_z[t, 0] - HEAD_RADII[2] * hs * math.sqrt(max(0.0, 1 - dx * dx - dy * dy))
            if dx * dx + dy * dy < 1 and surface < best:
                best, part = surface, PART["Hair"] if dy < -0.45 else PART["Face_Neck"]
            assert parts[t, r, c] == part, (t, r, c)
            assert depth[t, r, c] == pytest.approx(best, rel=1e-9)


def test_fast_hands_get_lost_more_often(small_corpus):
    """MediaPipe's simulated hand tracking fails more on fast frames than on slow ones."""
    _, corpus, _ = small_corpus
    fast_lost, slow_lost = [], []
    for gt in _ground_truths(corpus, 40):
        for seed in range(3):
            v = simulated.simulate_mediapipe(gt, np.random.default_rng(seed), noise=3.0)
            for side, sl in (("left", mediapipe.LEFT_HAND), ("right", mediapipe.RIGHT_HAND)):
                lost = ~np.any(v.values[:, sl] != 0, axis=1) & v.mask
                speed = gt.speed_px(f"{side}_wrist") / gt.height
                fast_lost += lost[speed > 0.03].tolist()
                slow_lost += lost[speed < 0.005].tolist()
    assert np.mean(fast_lost) > np.mean(slow_lost)


# --- the real MediaPipe Holistic backend ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def astronaut():
    from skimage import data

    return data.astronaut()  # (512, 512, 3) RGB, a real photo of a person


def test_holistic_finds_pose_and_face_on_a_real_photo(astronaut):
    import mediapipe as mp

    from extractors.backends.holistic import HolisticBackend

    out = HolisticBackend().extract_frames([astronaut])
    assert out.mask.tolist() == [True]
    pose = out.values[0, mediapipe.POSE].reshape(33, 4)
    nose, l_sh, r_sh = pose[0], pose[11], pose[12]
    # the astronaut's face is around x 0.35-0.55, y 0.1-0.35 of the photo; her shoulders are below it
    assert 0.3 < nose[0] < 0.6 and 0.1 < nose[1] < 0.4 and nose[3] > 0.9
    assert l_sh[1] > nose[1] and r_sh[1] > nose[1]
    assert l_sh[0] > r_sh[0]  # the signer's left shoulder is on the image right (facing the camera)
    assert pose[27, 1] > 1.0 and pose[27, 3] < nose[3]  # ankles: extrapolated below the photo, low visibility
    # Holistic finds the face too (its mesh is not part of the 258-dim track)
    with mp.solutions.holistic.Holistic(static_image_mode=True, model_complexity=1) as h:
        res = h.process(astronaut)
    assert res.face_landmarks is not None and len(res.face_landmarks.landmark) == 468
    face_x = np.mean([p.x for p in res.face_landmarks.landmark])
    assert abs(face_x - nose[0]) < 0.08


def test_holistic_on_a_video_tracks_every_frame_and_zeros_missing_hands(astronaut, tmp_path):
    from extractors.backends.holistic import HolisticBackend
    from pipeline.corpus.render import write_video

    frames = np.stack([np.roll(astronaut, 4 * k, axis=1) for k in range(6)])[..., ::-1]  # BGR, 4 px a frame
    path = tmp_path / "astronaut.mp4"
    write_video(path, np.ascontiguousarray(frames), 10)
    out = HolisticBackend().extract_video(path)
    assert out.values.shape == (6, 258) and out.mask.all()
    nose_x = out.values[:, 0]
    assert np.all(np.diff(nose_x) > 0)  # the pan moves the person right, and tracking follows
    # 20 px in all; measured 14 px: landmark smoothing lags behind the pan, never overshoots it
    assert 0.5 * 20 / 512 < nose_x[-1] - nose_x[0] < 1.1 * 20 / 512
    assert np.all(out.values[:, 3] > 0.9)  # the nose's visibility
    # Holistic finds neither hand in this photo (her gloved hands hold the helmet): each is exactly zero
    assert not out.values[:, mediapipe.LEFT_HAND].any() and not out.values[:, mediapipe.RIGHT_HAND].any()


def test_holistic_refuses_unreadable_videos(tmp_path):
    from extractors.backends.holistic import HolisticBackend

    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    for name in ("empty.mp4", "corrupt.mp4", "missing.mp4"):
        with pytest.raises((OSError, ValueError)):
            HolisticBackend().extract_video(tmp_path / name)
