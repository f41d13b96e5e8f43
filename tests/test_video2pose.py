"""Video2Pose network, the video reader and frame cache, and the masked reconstruction loss."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import timm
import torch

from pipeline.layout import FUSED
from pipeline.nets.losses import distillation_loss, reconstruction_loss
from pipeline.nets.video2pose import Video2Pose, Video2PoseConfig, build_vit
from pipeline.video import FrameCache, FrameSpec, colour_jitter, geometric_jitter, pad_frames, read_video
from pipeline.videoio import VideoError

TRACK_DIMS = FUSED.dims
TINY = dict(img_size=32, patch_size=16, vit_dim=32, vit_depth=1, vit_heads=2, d_temporal=32, temporal_layers=1,
            temporal_heads=2, dropout=0.0)  # fmt: skip


def write_video(path, n_frames: int = 9, size: int = 40, seed: int = 0) -> np.ndarray:
    """An mp4 whose frame i is a flat colour with a moving square; returns the RGB frames written."""
    rng = np.random.default_rng(seed)
    frames = []
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (size, size))
    for i in range(n_frames):
        f = np.full((size, size, 3), rng.integers(40, 200, 3), np.uint8)
        f[4 + i : 14 + i, 4:14] = 255
        frames.append(f[..., ::-1])  # OpenCV writes BGR
        vw.write(f)
    vw.release()
    return np.stack(frames)


def test_read_video_resizes_and_subsamples(tmp_path):
    written = write_video(tmp_path / "a.mp4", n_frames=9, size=40)
    frames = read_video(tmp_path / "a.mp4", FrameSpec(size=20, stride=2))
    assert frames.shape == (5, 20, 20, 3) and frames.dtype == np.uint8  # frames 0, 2, 4, 6, 8
    expected = cv2.resize(np.ascontiguousarray(written[4]), (20, 20), interpolation=cv2.INTER_AREA)
    assert np.abs(frames[2].astype(int) - expected.astype(int)).mean() < 8  # frame 4, up to codec loss
    assert len(read_video(tmp_path / "a.mp4", FrameSpec(size=20, stride=1, max_frames=4))) == 4


@pytest.mark.parametrize("content", [b"", b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000)])
def test_corrupt_empty_or_missing_videos_raise_a_clear_error(tmp_path, content):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    with pytest.raises(VideoError, match="bad.mp4"):
        read_video(bad, FrameSpec())
    with pytest.raises(VideoError, match="no such video"):
        read_video(tmp_path / "missing.mp4", FrameSpec())


def test_frame_cache_decodes_once_and_notices_a_changed_video(tmp_path):
    video = tmp_path / "a.mp4"
    write_video(video, seed=1)
    cache = FrameCache(tmp_path / "cache", FrameSpec(size=16))
    first = np.array(cache.get(video))
    entry = cache.path_for(video)
    assert entry.exists()
    assert np.array_equal(np.load(entry), first) and np.array_equal(cache.get(video), first)
    write_video(video, n_frames=5, seed=2)  # replaced: a new key, decoded again (never a stale entry)
    os.utime(video, ns=(entry.stat().st_mtime_ns + 10**9,) * 2)
    assert cache.path_for(video) != entry and len(cache.get(video)) == 5
    assert not list(cache.root.glob(".*.tmp"))  # writes are atomic


def test_frame_cache_fill_reports_bad_videos_and_caches_the_rest(tmp_path):
    good = [tmp_path / f"{i}.mp4" for i in range(3)]
    for i, v in enumerate(good):
        write_video(v, seed=i)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    cache = FrameCache(tmp_path / "cache", FrameSpec(size=16))
    failed = cache.fill([*good, bad], workers=2)
    assert list(failed) == [str(bad)] and "bad.mp4" in failed[str(bad)]
    assert all(cache.path_for(v).exists() for v in good)


@pytest.mark.parametrize(
    "stem,pool,stem_patch", [("patch", "avg", 1), ("conv", "avg", 1), ("conv", "tokens", 4), ("patch", "tokens", 1)]
)
def test_shapes_through_video2pose(stem, pool, stem_patch):
    model = Video2Pose(Video2PoseConfig(**TINY, stem=stem, pool=pool, stem_patch=stem_patch)).eval()
    frames = torch.randint(0, 256, (2, 5, 32, 32, 3), dtype=torch.uint8)
    pad = torch.tensor([[False] * 5, [False, False, False, True, True]])
    out = model(frames, pad)
    assert out.shape == (2, 5, FUSED.width) == (2, 5, sum(TRACK_DIMS))
    assert torch.isfinite(out).all()
    assert model.vit.patch_embed.grid_size == (2, 2)  # every stem: one token per 16 x 16 pixels
    if stem == "conv":  # the first layer: a 4x4 stride-4 patchify conv, or the first of four 3x3 stride-2 ones
        convs = [m for m in model.vit.patch_embed.backbone.modules() if isinstance(m, torch.nn.Conv2d)]
        assert (convs[0].kernel_size, convs[0].stride) == (((4, 4), (4, 4)) if stem_patch == 4 else ((3, 3), (2, 2)))
        assert len(convs) == (3 if stem_patch == 4 else 4)


def test_conv_stem_rejects_a_patch_it_cannot_build():
    with pytest.raises(ValueError, match="stem_patch"):
        Video2Pose(Video2PoseConfig(**TINY, stem_patch=3))


def test_token_pooling_keeps_where_things_are_in_the_frame():
    # a frame and the same frame with its left and right halves (columns of 16 x 16 patches) swapped: without
    # position embeddings the ViT sees the same set of tokens, so their mean is the same; in grid order it is not
    frames = torch.randint(0, 256, (1, 32, 32, 3), dtype=torch.uint8)
    swapped = torch.cat([frames[:, :, 16:], frames[:, :, :16]], dim=2)
    for pool, same in (("avg", True), ("tokens", False)):
        # the patchify stem: each token sees only its own patch (a conv stem's padding sees the frame border)
        model = Video2Pose(Video2PoseConfig(**TINY, stem="patch", pool=pool)).eval()
        model.vit.pos_embed.data.zero_()
        a, b = model.encode_frames(frames), model.encode_frames(swapped)
        assert torch.allclose(a, b, atol=1e-5) == same, pool


def test_colour_jitter_is_one_draw_per_clip_and_seeded():
    frames = torch.randint(30, 220, (3, 4, 8, 8, 3), dtype=torch.uint8)
    frames[:, 1:] = frames[:, :1]  # every frame of a clip identical
    a = colour_jitter(frames, 0.3, torch.Generator().manual_seed(0))
    assert a.shape == frames.shape and a.dtype == torch.uint8
    assert torch.equal(a, colour_jitter(frames, 0.3, torch.Generator().manual_seed(0)))
    assert not torch.equal(a, colour_jitter(frames, 0.3, torch.Generator().manual_seed(1)))
    assert (a[:, 1:] == a[:, :1]).all()  # the same jitter on every frame of a clip: no flicker
    assert not torch.equal(a[0, 0], a[1, 0]) or not torch.equal(frames[0, 0], frames[1, 0])
    changed = (a.int() - frames.int()).abs().float().mean()
    assert changed > 5  # a visible change at strength 0.3
    assert torch.equal(colour_jitter(frames, 0.0, torch.Generator()), frames)


def test_jitters_read_and_change_only_real_frames():
    frames = torch.randint(30, 220, (2, 6, 8, 8, 3), dtype=torch.uint8)
    pad = torch.zeros(2, 6, dtype=torch.bool)
    pad[0, 3:] = True  # clip 0 has 3 real frames
    frames[pad] = 0
    out = colour_jitter(frames, 0.3, torch.Generator().manual_seed(0), pad)
    assert torch.equal(out[pad], frames[pad])  # padding left as it is
    # clip 0's mean grey is over its real frames only: the same as jittering those frames alone (same draws)
    alone = colour_jitter(frames[:, :3].contiguous(), 0.3, torch.Generator().manual_seed(0))
    assert torch.equal(out[0, :3], alone[0]) and not torch.equal(out[0, :3], frames[0, :3])
    moved_out, moved = geometric_jitter(frames, 0.2, torch.Generator().manual_seed(1), p=1.0, frame_pad=pad)
    everything, _ = geometric_jitter(frames, 0.2, torch.Generator().manual_seed(1), p=1.0)
    assert moved.all() and torch.equal(moved_out[pad], frames[pad])
    assert torch.equal(moved_out[~pad], everything[~pad])  # real frames moved exactly as without `frame_pad`


def test_geometric_jitter_moves_whole_clips_and_says_which():
    frames = torch.zeros(6, 3, 16, 16, 3, dtype=torch.uint8)
    frames[:, :, 6:10, 6:10] = 255  # a white square in the middle of every frame
    gen = torch.Generator().manual_seed(0)
    out, moved = geometric_jitter(frames, 0.2, gen)
    assert out.shape == frames.shape and out.dtype == torch.uint8 and moved.dtype == torch.bool
    assert 0 < moved.sum() < 6  # about half the clips
    assert torch.equal(out[~moved], frames[~moved])
    for b in torch.nonzero(moved).flatten():
        assert not torch.equal(out[b], frames[b])
        assert (out[b, 1:] == out[b, :1]).all()  # one draw per clip: every frame moved alike
        centre = (out[b, 0, ..., 0].float() > 127).nonzero().float().mean(0)
        assert centre.sub(7.5).abs().max() <= 0.2 * 16 + 1  # moved by at most `strength` of the frame
    again, moved_again = geometric_jitter(frames, 0.2, torch.Generator().manual_seed(0))
    assert torch.equal(again, out) and torch.equal(moved_again, moved)
    # off: nothing moves, and the same draws are taken (a resumed run stays on one random stream)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    same, none = geometric_jitter(frames, 0.0, g1)
    geometric_jitter(frames, 0.2, g2)
    assert torch.equal(same, frames) and not none.any()
    assert torch.equal(g1.get_state(), g2.get_state())


def test_the_cpu_attention_kernel_computes_the_same_tracks():
    from pipeline.devices import video_attention

    model = Video2Pose(Video2PoseConfig(**TINY | {"vit_depth": 2})).eval()
    frames = torch.randint(0, 256, (2, 5, 32, 32, 3), dtype=torch.uint8)
    pad = torch.zeros(2, 5, dtype=torch.bool)
    pad[1, 3:] = True
    with torch.no_grad():
        default = model(frames, pad)
        with video_attention(torch.device("cpu")):
            assert not torch.backends.cuda.flash_sdp_enabled() and torch.backends.cuda.math_sdp_enabled()
            math = model(frames, pad)
        assert torch.backends.cuda.flash_sdp_enabled()  # restored afterwards
    torch.testing.assert_close(math, default, rtol=1e-4, atol=1e-5)


def test_padding_frames_change_nothing():
    model = Video2Pose(Video2PoseConfig(**TINY)).eval()
    frames = torch.randint(0, 256, (2, 6, 32, 32, 3), dtype=torch.uint8)
    pad = torch.zeros(2, 6, dtype=torch.bool)
    pad[1, 4:] = True
    other = frames.clone()
    other[1, 4:] = 255 - other[1, 4:]  # only padding differs
    a, b = model(frames, pad), model(other, pad)
    torch.testing.assert_close(a[:, :4], b[:, :4])
    torch.testing.assert_close(a[0], b[0])
    # and a real frame does matter (the test would pass for a model that ignored its input otherwise)
    other[1, 0] = 255 - other[1, 0]
    assert not torch.allclose(model(other, pad)[1, :4], a[1, :4])


def test_runs_under_mixed_precision():
    # what training does on CUDA (bfloat16 autocast); the CPU autocast exercises the same dtype handling
    model = Video2Pose(Video2PoseConfig(**TINY))
    pad = torch.tensor([[False, False, True], [False, False, False]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.zeros(2, 3, 32, 32, 3, dtype=torch.uint8), pad)
    assert out.shape == (2, 3, sum(TRACK_DIMS)) and torch.isfinite(out.float()).all()


def test_pad_frames():
    batch = pad_frames([np.ones((3, 4, 4, 3), np.uint8), np.full((1, 4, 4, 3), 7, np.uint8)])
    assert batch["frames"].shape == (2, 3, 4, 4, 3)
    assert batch["frame_pad"].tolist() == [[False, False, False], [False, True, True]]
    assert int(batch["frames"][1, 0, 0, 0, 0]) == 7 and int(batch["frames"][1, 1].sum()) == 0


def test_a_named_timm_backbone_loads_local_pretrained_weights(tmp_path):
    # weights saved at 224 px (as published) and loaded at 32 px: timm resamples the position embedding
    reference = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0)
    torch.save(reference.state_dict(), tmp_path / "vit_tiny.pth")
    cfg = Video2PoseConfig(**TINY | {"backbone": "vit_tiny_patch16_224", "pretrained": str(tmp_path / "vit_tiny.pth")})
    vit = build_vit(cfg)
    loaded = vit.state_dict()
    for k, v in reference.state_dict().items():
        if k != "pos_embed":
            torch.testing.assert_close(loaded[k], v)
    assert loaded["pos_embed"].shape == (1, 1 + (32 // 16) ** 2, 192)  # class token + a 2 x 2 grid
    frames, pad = torch.zeros(1, 2, 32, 32, 3, dtype=torch.uint8), torch.zeros(1, 2, dtype=torch.bool)
    assert Video2Pose(cfg)(frames, pad).shape == (1, 2, sum(TRACK_DIMS))
    with pytest.raises(FileNotFoundError, match="video2pose.pretrained"):
        build_vit(Video2PoseConfig(**TINY | {"backbone": "vit_tiny_patch16_224", "pretrained": str(tmp_path / "no")}))
    with pytest.raises(ValueError, match="video2pose.backbone"):
        build_vit(Video2PoseConfig(**TINY | {"pretrained": str(tmp_path / "vit_tiny.pth")}))


def test_reconstruction_loss_respects_the_track_mask():
    g = torch.Generator().manual_seed(0)
    B, T, D = 2, 4, sum(TRACK_DIMS)
    target = torch.randn(B, T, D, generator=g)
    mask = torch.ones(B, T, len(TRACK_DIMS), dtype=torch.bool)
    mask[0, 1, 1] = False  # dwpose missed frame 1 of utterance 0
    mask[1, 3] = False  # a padding frame
    assert reconstruction_loss(target.clone(), target, mask, TRACK_DIMS) == 0
    pred = target.clone()
    a, b = FUSED.slices["dwpose"]
    pred[0, 1, a:b] += 5.0  # wrong only where there is no ground truth
    pred[1, 3] -= 3.0
    assert reconstruction_loss(pred, target, mask, TRACK_DIMS) == 0
    pred[0, 0, a:b] += 1.0  # wrong on one real dwpose frame: mean over the 6 real dwpose frames, 384 dims each
    torch.testing.assert_close(reconstruction_loss(pred, target, mask, TRACK_DIMS), torch.tensor(1.0 / 6))


def test_distillation_loss_is_the_teachers_kl_over_kept_positions():
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(2, 5, 7, generator=g), torch.randn(2, 5, 7, generator=g)
    keep = torch.tensor([[True, True, True, False, False], [True, True, True, True, True]])
    expected = torch.nn.functional.kl_div(
        student.log_softmax(-1)[keep], teacher.log_softmax(-1)[keep], log_target=True, reduction="batchmean"
    )
    torch.testing.assert_close(distillation_loss(student, teacher, keep), expected)
    assert distillation_loss(teacher, teacher, keep).abs() < 1e-6  # the teacher's own outputs cost nothing
    moved = student.clone()
    moved[0, 3:] += 100  # masked positions never count
    torch.testing.assert_close(distillation_loss(moved, teacher, keep), expected)
    student.requires_grad_(True)
    distillation_loss(student, teacher.requires_grad_(True), keep).backward()
    assert teacher.grad is None and student.grad.abs().sum() > 0  # no gradient into the (frozen) teacher
