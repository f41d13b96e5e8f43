"""Tiny models with the real pose models' input and output signatures and rigged weights whose right answer is
known, built in the tests (no weights can be downloaded): DWPose's YOLOX detector and whole-body pose model as
ONNX files. Also used by `bench/bench_backends.py` and the end-to-end DVC test."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from extractors import wholebody

RED, GREEN = 0, 1  # RGB channels: people are drawn red, keypoints green


@dataclass(frozen=True)
class PlantedPerson:
    """A person the tiny detector sees: its box (x0, y0, x1, y1) in frame pixels, and its score when the box is
    fully red in the frame (the detector's objectness is the box's mean red / 255 times `score`)."""

    box: tuple[float, float, float, float]
    score: float = 0.8
    label: int = 0  # COCO class: 0 person; another class must be ignored


def _anchor(box: np.ndarray) -> tuple[int, list[float]]:
    """The stride-32 anchor index of a box (in the 640 x 640 letterbox) and its raw [tx, ty, tw, th]."""
    cx, cy = (box[:2] + box[2:]) / 2
    gx, gy = int(cx // 32), int(cy // 32)
    index = 80 * 80 + 40 * 40 + gy * 20 + gx
    return index, [cx / 32 - gx, cy / 32 - gy, math.log((box[2] - box[0]) / 32), math.log((box[3] - box[1]) / 32)]


class TinyDetector(nn.Module):
    """(N, 3, 640, 640) -> (N, 8400, 85) YOLOX-shaped output: each planted person sits at one anchor, with an
    objectness gated by how red its (letterboxed) box is in the input; every other anchor scores 0."""

    def __init__(self, people: list[PlantedPerson], ratio: float) -> None:
        super().__init__()
        template = torch.zeros(1, 8400, 85)
        gates = torch.zeros(len(people), 8400, 85)
        self.regions = []
        for p, person in enumerate(people):
            box = np.array(person.box, np.float64) * ratio
            index, raw = _anchor(box)
            if template[0, index, 5:].any():
                raise ValueError("two planted people share an anchor")
            template[0, index, :4] = torch.tensor(raw)
            template[0, index, 5 + person.label] = 1.0
            gates[p, index, 4] = person.score
            x0, y0, x1, y1 = (int(round(v)) for v in box)
            self.regions.append((x0 + 2, y0 + 2, x1 - 2, y1 - 2))  # inside the box: its edges blur when resized
        self.register_buffer("template", template)
        self.register_buffer("gates", gates)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # every 4th pixel of each box: the same mean for a filled box, and little work for the benchmark's sake
        red = torch.stack([x[:, RED, y0:y1:4, x0:x1:4].mean((1, 2)) for x0, y0, x1, y1 in self.regions], 1) / 255
        return self.template + (red[:, :, None, None] * self.gates[None]).sum(1)  # (N, 8400, 85)


def planted_offset(k: int) -> tuple[int, int]:
    """Keypoint k of the tiny pose model lies this many crop pixels (x, y) right of and below the green dot."""
    return k % 12, k // 12


def planted_scales(k: int) -> tuple[float, float]:
    """The factors of keypoint k's SimCC x and y vectors (its score is the smaller maximum)."""
    return 0.2 + 0.005 * k, 0.25 + 0.004 * k


class TinyPose(nn.Module):
    """(N, 3, 384, 288) -> simcc_x (N, 133, 576), simcc_y (N, 133, 768): keypoint k peaks at the crop's
    greenest column / row shifted by `planted_offset(k)` crop pixels, scaled by `planted_scales(k)`."""

    def __init__(self) -> None:
        super().__init__()
        k = torch.arange(wholebody.N_WHOLEBODY)[:, None]
        dx, dy = k % 12, k // 12  # planted_offset(k)
        # keypoint k's bin j reads the crop's bin j - 2 * offset (a roll along the SimCC axis)
        self.register_buffer("x_source", (torch.arange(576)[None] - 2 * dx) % 576)  # (133, 576)
        self.register_buffer("y_source", (torch.arange(768)[None] - 2 * dy) % 768)  # (133, 768)
        self.register_buffer("x_scale", 0.2 + 0.005 * k.float())  # planted_scales(k)
        self.register_buffer("y_scale", 0.25 + 0.004 * k.float())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        green = x[:, GREEN]  # (N, 384, 288) normalised
        col = green.amax(1).repeat_interleave(2, -1)  # (N, 576): SimCC bins, split ratio 2
        row = green.amax(2).repeat_interleave(2, -1)  # (N, 768)
        return col[:, self.x_source] * self.x_scale, row[:, self.y_source] * self.y_scale  # (N, 133, 576 / 768)


def export_onnx(model: nn.Module, path: Path, inputs: tuple[int, ...], output_names: list[str], batch: bool) -> Path:
    """`model` as an ONNX file with the real model's input / output names (batch dim free when `batch`)."""
    axes = {name: {0: "N"} for name in ["input", *output_names]} if batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(), torch.zeros(inputs), str(path), input_names=["input"], output_names=output_names,
            dynamic_axes=axes, dynamo=False, opset_version=17,
        )  # fmt: skip
    return path


def dwpose_models(folder: Path, people: list[PlantedPerson], ratio: float) -> tuple[Path, Path]:
    """(detector, pose model) ONNX files in `folder`: the detector takes one frame at a time like yolox_l.onnx,
    the pose model any batch."""
    folder.mkdir(parents=True, exist_ok=True)
    det = export_onnx(TinyDetector(people, ratio), folder / "yolox_l.onnx", (1, 3, 640, 640), ["output"], False)
    pose = export_onnx(TinyPose(), folder / "dw-ll_ucoco_384.onnx", (2, 3, 384, 288), ["simcc_x", "simcc_y"], True)
    return det, pose


def draw_people(frame: np.ndarray, people: list[PlantedPerson], dots: list[tuple[int, int]]) -> np.ndarray:
    """Paint each person's box red and put a one-pixel green dot at each (x, y) of `dots` (RGB frame, in place)."""
    for person in people:
        x0, y0, x1, y1 = (int(round(v)) for v in person.box)
        frame[y0:y1, x0:x1, RED] = 255
    for x, y in dots:
        frame[y, x, GREEN] = 255
    return frame


def depth_model_folder(folder: Path) -> Path:
    """A tiny Depth Anything (a 2-layer DINOv2 backbone, 56 x 56 input) and its image processor, saved with
    `save_pretrained` into `folder` like a downloaded model folder."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    backbone = Dinov2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, patch_size=14,
        image_size=56, out_features=["stage1", "stage2"], reshape_hidden_states=False,
    )  # fmt: skip
    config = DepthAnythingConfig(
        backbone_config=backbone, reassemble_hidden_size=32, neck_hidden_sizes=[16, 32], fusion_hidden_size=16,
        head_hidden_size=8, reassemble_factors=[2, 1], patch_size=14,
    )  # fmt: skip
    torch.manual_seed(0)
    DepthAnythingForDepthEstimation(config).save_pretrained(folder)
    DPTImageProcessor(
        size={"height": 56, "width": 56}, keep_aspect_ratio=False, ensure_multiple_of=14,
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
    ).save_pretrained(folder)  # fmt: skip
    return folder


# Sapiens: the colour each planted body part is painted in (RGB); every other class is never predicted
PART_COLOURS = {0: (0, 0, 0), 2: (0, 0, 255), 14: (0, 255, 0), 21: (255, 0, 0)}  # Background, Face_Neck, R hand, Torso


class TinySegmenter(nn.Module):
    """(B, 3, 1024, 768) normalised -> (B, 28, 512, 384) logits: each 2 x 2 block is labelled with the class whose
    planted colour (`PART_COLOURS`, normalised with Sapiens' mean / std) is nearest to the block's mean colour."""

    def __init__(self) -> None:
        super().__init__()
        mean, std = torch.tensor([123.5, 116.5, 103.5]), torch.tensor([58.5, 57.0, 57.5])
        centres = torch.full((28, 3), 1e4)
        for c, rgb in PART_COLOURS.items():
            centres[c] = (torch.tensor(rgb, dtype=torch.float32) - mean) / std
        self.head = nn.Conv2d(3, 28, 1)  # -|x - c|^2 + |x|^2 = 2 x.c - |c|^2: the nearest colour scores highest
        with torch.no_grad():
            self.head.weight.copy_(2 * centres[:, :, None, None])
            self.head.bias.copy_(-(centres**2).sum(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(nn.functional.avg_pool2d(x, 2))


def sapiens_model(path: Path, channels: int = 28) -> Path:
    """The tiny segmenter traced to TorchScript at `path` (`channels` != 28: a model of the wrong signature)."""
    model = TinySegmenter().eval()
    if channels != 28:
        model.head = nn.Conv2d(3, channels, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.trace(model, torch.zeros(1, 3, 1024, 768)).save(str(path))
    return path
