"""The `wlasl` corpus source: WLASL's JSON (`WLASL_v0.3.json`) and its videos.

The JSON is a list of glosses, most instances first, each `{"gloss": ..., "instances": [{"video_id", "split",
"signer_id", "fps", "frame_start", "frame_end", "bbox", ...}]}`. WLASL100 / 300 / 1000 / 2000 are the first 100 /
300 / 1000 / 2000 glosses of that list (`subset`; the official splits are made the same way). Each instance's split
is WLASL's own (train / val / test).

Videos are `<video_dir>/<video_id>.mp4`. As WLASL's `preprocess.py` writes them (and as the processed copies people
share hold them) each video is already the instance (`trimmed: true`, the default): the whole file is the clip.
With `trimmed: false` the file is the full source video and the instance is its frames `frame_start` to
`frame_end` (1-based, inclusive; `frame_end` -1 = to the end), cut here. The instance's `fps` (25 throughout
WLASL, whatever the video's real rate) is not used: the video's own frame rate is the manifest's, as for every
source; nor is its `bbox`: the extractors find the signer in every frame themselves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pipeline.corpus.clips import Span
from pipeline.corpus.importing import Entry, ImportConfig, Skip, import_corpus
from pipeline.corpus.sources import register_source

SUBSETS = (100, 300, 1000, 2000)
SPLITS = {"train": "train", "val": "val", "test": "test"}


@dataclass(frozen=True)
class WLASLConfig(ImportConfig):
    json_path: str = "external/corpus/wlasl/WLASL_v0.3.json"  # WLASL's JSON
    video_dir: str = "external/corpus/wlasl/videos"  # <video_id>.mp4 files
    subset: int = 2000  # WLASL100 / 300 / 1000 / 2000: the first N glosses of the JSON
    trimmed: bool = True  # each video is already its instance (WLASL's preprocess.py); false: cut by frame_start / end

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.subset not in SUBSETS:
            raise ValueError(f"corpus.wlasl.subset must be one of {list(SUBSETS)}, got {self.subset!r}")


def read_wlasl(cfg: WLASLConfig) -> tuple[list[Entry], list[Skip]]:
    """The instances of the subset's glosses, and the ones that cannot be imported (named by video_id)."""
    content = _load_json(Path(cfg.json_path))
    entries, skipped = [], []
    for k, item in enumerate(content[: cfg.subset]):
        if not isinstance(item, dict) or not isinstance(item.get("gloss"), str) or not item["gloss"].strip():
            skipped.append((f"{cfg.json_path}[{k}]", "gloss entry without a gloss"))
            continue
        gloss = item["gloss"].strip().replace(" ", "_")
        instances = item.get("instances") or []
        if not isinstance(instances, list):  # iterating an int fails, a dict or a string yields its keys / letters
            reason = f"gloss entry {item['gloss']!r}: its instances are not a list (got {type(instances).__name__})"
            skipped.append((f"{cfg.json_path}[{k}]", reason))
            continue
        for j, inst in enumerate(instances):
            try:
                entries.append(_entry(cfg, gloss, inst))
            except (KeyError, TypeError, ValueError) as err:
                name = inst.get("video_id", f"{gloss}[{j}]") if isinstance(inst, dict) else f"{gloss}[{j}]"
                said = f"no {err}" if isinstance(err, KeyError) else str(err)  # a KeyError's text is the key alone
                skipped.append((str(name), f"unreadable instance: {said}"))
    return entries, skipped


def _load_json(path: Path) -> list:
    if not path.is_file():
        raise FileNotFoundError(f"corpus.wlasl.json_path: no WLASL JSON at {path} (WLASL's WLASL_v0.3.json)")
    try:
        content = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"corpus.wlasl.json_path: {path} is not valid JSON ({err})") from err
    except RecursionError:  # json's parser recurses once per level of nesting; WLASL's JSON has five
        raise ValueError(f"corpus.wlasl.json_path: {path} is not valid JSON (nested too deeply)") from None
    if not isinstance(content, list):
        raise ValueError(f"corpus.wlasl.json_path: {path} is not WLASL's JSON (a list of glosses with instances)")
    return content


def _entry(cfg: WLASLConfig, gloss: str, inst: dict) -> Entry:
    if not isinstance(inst, dict):
        raise ValueError(f"an instance is a JSON object, not a {type(inst).__name__}")
    video_id = str(inst["video_id"])
    split = SPLITS.get(inst["split"])
    if split is None:
        raise ValueError(f"split {inst['split']!r} is not one of {list(SPLITS)}")
    start, end = int(inst.get("frame_start", 1)), int(inst.get("frame_end", -1))
    if start < 1 or (end != -1 and end < start):
        raise ValueError(f"frame_start {start} / frame_end {end} are not a span (1-based, -1 = to the end)")
    span = Span() if cfg.trimmed else Span(start - 1, None if end == -1 else end, "frame")
    signer = inst.get("signer_id")
    return Entry(video_id, Path(cfg.video_dir) / f"{video_id}.mp4", (gloss,), span, split,
                 None if signer is None else str(signer), "isolated")  # fmt: skip


@register_source("wlasl", config=WLASLConfig)
def build(cfg: WLASLConfig, out_dir: Path, workers: int | None = None) -> dict:
    entries, skipped = read_wlasl(cfg)
    return import_corpus(cfg, entries, skipped, out_dir, workers) | {"subset": f"WLASL{cfg.subset}"}
