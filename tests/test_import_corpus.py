"""Real corpus sources (wlasl, csv) and what every importer shares: clips cut on the right time base, the vocabulary
by frequency, splits by signer, every skipped entry reported by name while the rest imports."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from pipeline.corpus.clips import Span, SpanError, cut_clip
from pipeline.corpus.importing import Entry, ImportConfig, assign_splits, import_corpus
from pipeline.corpus.manifest import read_manifest
from pipeline.corpus.sources import build_corpus
from pipeline.videoio import read_frames

BITS = 6  # frame numbers up to 63, one bit per 8-pixel stripe: black or white survives any lossy encoding


def make_video(path: Path, n_frames: int, fps: float = 10.0) -> Path:
    """A video whose frame i shows i in binary, one black or white 8-pixel stripe per bit: a decoded frame says
    which source frame it is."""
    size = 8 * BITS
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size, size))
    for i in range(n_frames):
        bits = np.array([(i >> b) & 1 for b in range(BITS)], np.uint8) * 255
        writer.write(np.repeat(np.repeat(bits, 8)[None, :, None], size, axis=0).repeat(3, axis=2))
    writer.release()
    return path


def frame_numbers(video: Path) -> list[int]:
    """The source frame each frame of a clip made from `make_video` shows."""
    stripes = [f.reshape(f.shape[0], BITS, 8, 3).mean(axis=(0, 2, 3)) > 128 for f in read_frames(video)]
    return [int(sum(int(b) << k for k, b in enumerate(s))) for s in stripes]


def test_cut_by_seconds_uses_the_videos_frame_rate(tmp_path):
    src = make_video(tmp_path / "src.mp4", 25, fps=10.0)
    info = cut_clip(src, tmp_path / "clip.mp4", Span(0.5, 1.5, "second"))
    assert (info.n_frames, info.fps, info.width, info.height) == (10, 10.0, 48, 48)
    assert frame_numbers(tmp_path / "clip.mp4") == list(range(5, 15))
    src25 = make_video(tmp_path / "src25.mp4", 25, fps=25.0)  # the same times are other frames at another rate
    cut_clip(src25, tmp_path / "clip25.mp4", Span(0.2, 0.6, "second"))
    assert frame_numbers(tmp_path / "clip25.mp4") == list(range(5, 15))


def test_cut_by_frames_and_the_whole_video(tmp_path):
    src = make_video(tmp_path / "src.mp4", 20)
    cut_clip(src, tmp_path / "a.mp4", Span(3, 8, "frame"))
    assert frame_numbers(tmp_path / "a.mp4") == [3, 4, 5, 6, 7]
    info = cut_clip(src, tmp_path / "whole.mp4", Span())
    assert info.n_frames == 20 and (tmp_path / "whole.mp4").read_bytes() == src.read_bytes()  # copied, not re-encoded


@pytest.mark.parametrize("span", [Span(15, 25, "frame"), Span(30, None, "frame"), Span(1.0, 3.0, "second")])
def test_a_span_outside_the_video_is_refused_and_nothing_is_written(tmp_path, span):
    src = make_video(tmp_path / "src.mp4", 20)
    with pytest.raises(SpanError, match="outside the video, which (has 20 frames|ends before frame 30)"):
        cut_clip(src, tmp_path / "clip.mp4", span)
    assert not list(tmp_path.glob("clip*"))


def wlasl_json(tmp_path: Path) -> Path:
    """WLASL_v0.3.json's structure: glosses, most instances first, each with its instances."""

    def inst(video_id: str, split: str, signer: int, start: int = 1, end: int = -1) -> dict:
        return {"bbox": [10, 2, 30, 32], "fps": 25, "frame_start": start, "frame_end": end, "instance_id": 0,
                "signer_id": signer, "source": "test", "split": split, "url": "", "variation_id": 0,
                "video_id": video_id}  # fmt: skip

    content = [
        {"gloss": "book", "instances": [inst("00001", "train", 1), inst("00002", "train", 2),
                                        inst("00003", "val", 3), inst("00004", "test", 4, 3, 12)]},
        {"gloss": "drink", "instances": [inst("00011", "train", 1), inst("00012", "train", 2),
                                         inst("00013", "test", 3), inst("00014", "train", 4, 5, 40),
                                         {"split": "train"}, inst("00016", "holdout", 1)]},
        {"gloss": "computer", "instances": [inst("00021", "train", 1), inst("00022", "train", 2),
                                            inst("00023", "test", 3)]},
    ]  # fmt: skip
    videos = tmp_path / "videos"
    videos.mkdir()
    for item in content:
        for i in item["instances"]:
            if i.get("video_id") not in (None, "00013"):  # 00013 is missing, as some are in every WLASL download
                make_video(videos / f"{i['video_id']}.mp4", 20)
    path = tmp_path / "WLASL_v0.3.json"
    path.write_text(json.dumps(content))
    return path


def build(tmp_path: Path, source: str, own: dict, **shared) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    section = {"source": source, "min_train_occurrences": 1, **shared, source: own}
    summary = build_corpus(section, seed=3, out_dir=tmp_path / "corpus", workers=2)
    skipped = pd.read_csv(tmp_path / "corpus" / "skipped.csv")
    return read_manifest(tmp_path / "corpus"), summary, skipped


def test_wlasl_cut_from_full_videos(tmp_path):
    path = wlasl_json(tmp_path)
    own = {"json_path": str(path), "video_dir": str(tmp_path / "videos"), "subset": 100, "trimmed": False}
    m, summary, skipped = build(tmp_path, "wlasl", own)
    by_id = m.set_index("utt_id")
    assert by_id.loc["00004", "split"] == "test" and by_id.loc["00004", "glosses"] == "book"
    assert by_id.loc["00004", "n_frames"] == 10  # frames 3-12, 1-based and inclusive
    assert frame_numbers(tmp_path / "corpus" / by_id.loc["00004", "video"]) == list(range(2, 12))
    assert by_id.loc["00001", "n_frames"] == 20 and set(m["task"]) == {"isolated"} and set(m["translation"]) == {""}
    assert by_id.loc["00002", "signer"] == "2" and summary["split"] == "the source's own"
    reasons = dict(zip(skipped["entry"], skipped["reason"]))
    assert reasons["00013"].startswith("missing video")
    assert reasons["00014"].startswith("times outside the video")  # frames 5-40 of a 20-frame video
    assert reasons["00016"].startswith("unreadable instance: split 'holdout'")
    assert reasons["drink[4]"].startswith("unreadable instance")  # no video_id
    assert summary["skipped_by_reason"]["missing video"] == 1
    assert len(m) == 9 and summary["n_glosses"] == 3


def test_wlasl_subset_is_the_first_glosses_and_trimmed_videos_are_whole(tmp_path):
    path = wlasl_json(tmp_path)
    content = json.loads(path.read_text())
    path.write_text(json.dumps(content * 40))  # 120 gloss entries: WLASL100 keeps the first 100
    own = {"json_path": str(path), "video_dir": str(tmp_path / "videos"), "subset": 100}
    m, _, _ = build(tmp_path, "wlasl", own)
    assert m.set_index("utt_id").loc["00004", "n_frames"] == 20  # trimmed: the video is the instance
    from pipeline.corpus.wlasl import WLASLConfig, read_wlasl

    entries, _ = read_wlasl(WLASLConfig(json_path=str(path), video_dir=str(tmp_path / "videos"), subset=100))
    assert len(entries) == 4 * 34 + 4 * 33 + 3 * 33  # 34 books, 33 drinks and computers among the first 100
    with pytest.raises(ValueError, match="subset must be one of"):
        WLASLConfig(subset=50)


def test_wlasl_malformed_json_names_the_param(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"corpus.wlasl.json_path: .*bad.json is not valid JSON"):
        build(tmp_path, "wlasl", {"json_path": str(tmp_path / "bad.json")})
    with pytest.raises(FileNotFoundError, match="corpus.wlasl.json_path: no WLASL JSON"):
        build(tmp_path, "wlasl", {"json_path": str(tmp_path / "none.json")})


def write_table(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_csv_source_times_in_seconds_and_bad_rows_reported_by_line(tmp_path):
    make_video(tmp_path / "long.mp4", 25, fps=10.0)
    make_video(tmp_path / "short.mp4", 12, fps=10.0)
    table = write_table(tmp_path / "corpus.csv", ["video", "glosses", "split", "signer", "start", "end"], [
        ["long.mp4", "IX-1p LIKE fs-JOHN", "train", "a", "0.5", "1.5"],   # line 2
        ["long.mp4", "LIKE", "train", "a", "2.0", ""],                     # 3: to the end
        ["short.mp4", "IX-1p LIKE", "test", "b", "", ""],                  # 4: the whole video
        ["short.mp4", "", "train", "a", "", ""],                           # 5: empty gloss
        ["long.mp4", "LIKE", "train", "a", "1.0", "0.5"],                  # 6: end before start
        ["long.mp4", "LIKE", "train", "a", "abc", ""],                     # 7: not a time
        ["gone.mp4", "LIKE", "train", "a", "", ""],                        # 8: missing video
        ["long.mp4", "LIKE", "train", "a", "3.0", "9.0"],                  # 9: past the end
        ["long.mp4", "IX-1p fs-JOHN", "val", "b", "0", "1"],               # 10
    ])  # fmt: skip
    m, summary, skipped = build(tmp_path, "csv", {"table": str(table)})
    assert m["utt_id"].tolist() == ["long", "long-2", "short", "long-4"]  # by video, numbered (long-3: skipped)
    first = m.iloc[0]
    assert first["glosses"] == "IX-1p LIKE fs-JOHN" and first["n_frames"] == 10 and first["task"] == "continuous"
    assert frame_numbers(tmp_path / "corpus" / first["video"]) == list(range(5, 15))
    assert m.iloc[1]["n_frames"] == 5 and m.iloc[1]["task"] == "isolated"
    reasons = dict(zip(skipped["entry"], skipped["reason"]))
    assert reasons["corpus.csv:5"] == "empty gloss"
    assert reasons["corpus.csv:6"].startswith("end 0.5 is not after start 1.0")
    assert reasons["corpus.csv:7"].startswith("start 'abc' is not a number of seconds")
    assert reasons["corpus.csv:8"].startswith("missing video")
    assert reasons["corpus.csv:9"].startswith("times outside the video")
    assert summary["skipped"] == 5


def test_csv_table_without_a_required_column_is_refused(tmp_path):
    table = write_table(tmp_path / "t.csv", ["file", "glosses"], [["a.mp4", "X"]])
    with pytest.raises(ValueError, match=r"corpus.csv.table: .* has no column \['video'\]"):
        build(tmp_path, "csv", {"table": str(table)})


def entries(n_signers: int, per_signer: int, glosses: list[str]) -> list[Entry]:
    rng = np.random.default_rng(0)
    return [Entry(f"s{s}-{k}", Path("x.mp4"), tuple(rng.choice(glosses, 3)), signer=f"s{s}")
            for s in range(n_signers) for k in range(per_signer)]  # fmt: skip


def test_split_by_signer_keeps_signers_apart(tmp_path):
    cfg = ImportConfig(val_fraction=0.2, test_fraction=0.2, seed=1)
    split, how = assign_splits(entries(8, 10, ["A", "B"]), cfg)
    assert how == "by signer"
    signers = {s: {e.signer for e in split if e.split == s} for s in ("train", "val", "test")}
    assert signers["val"] and signers["test"] and signers["train"]
    assert not (signers["train"] & signers["test"]) and not (signers["train"] & signers["val"])
    assert sum(e.split == "test" for e in split) == 20  # two whole signers of ten utterances each
    _, how = assign_splits(entries(2, 10, ["A"]), cfg)  # too few signers: utterances at random
    assert how == "random"
    _, how = assign_splits(entries(8, 10, ["A"]), ImportConfig(split_by_signer=False))
    assert how == "random"


def test_vocabulary_by_frequency_and_oov_entries_skipped(tmp_path):
    make_video(tmp_path / "v.mp4", 5)
    counts = {"A": 5, "B": 4, "C": 3, "D": 1}
    rows = [Entry(f"{g}{k}", tmp_path / "v.mp4", (g,), split="train", task="isolated")
            for g, n in counts.items() for k in range(n)]  # fmt: skip
    rows += [
        Entry("t1", tmp_path / "v.mp4", ("A",), split="test"),
        Entry("t2", tmp_path / "v.mp4", ("E",), split="test"),
    ]
    cfg = ImportConfig(min_train_occurrences=2, vocab_size=2)
    summary = import_corpus(cfg, rows, [], tmp_path, workers=1)
    vocab = json.loads((tmp_path / "vocab.json").read_text())
    assert summary["n_glosses"] == 2 and "C" not in json.dumps(vocab) and "A" in json.dumps(vocab)
    skipped = pd.read_csv(tmp_path / "skipped.csv")
    assert set(skipped["entry"]) == {"C0", "C1", "C2", "D0", "t2"}  # E: seen in test only, never in train
    assert (skipped["reason"].str.startswith("glosses not in the vocabulary")).all()
    assert read_manifest(tmp_path)["utt_id"].tolist() == [f"A{k}" for k in range(5)] + [f"B{k}" for k in range(4)] + [
        "t1"
    ]


@pytest.mark.bad_input(
    case="corpus of which no entry can be imported",
    sees="`prepare` stops: `no entry of the corpus could be imported (1 skipped; the first: [('bad.csv:2', 'missing "
    "video: <video>: no such video')])`",
    kept="the previous corpus, untouched",
)
def test_nothing_importable_is_an_error_and_leaves_the_previous_corpus(tmp_path):
    make_video(tmp_path / "v.mp4", 5)
    table = write_table(tmp_path / "ok.csv", ["video", "glosses", "split"], [["v.mp4", "A", "train"]])
    build(tmp_path, "csv", {"table": str(table)})
    before = (tmp_path / "corpus" / "manifest.parquet").read_bytes()
    bad = write_table(tmp_path / "bad.csv", ["video", "glosses", "split"], [["gone.mp4", "A", "train"]])
    with pytest.raises(ValueError) as err:
        build(tmp_path, "csv", {"table": str(bad)})
    first = f"[('bad.csv:2', 'missing video: {tmp_path / 'gone.mp4'}: no such video')]"
    assert str(err.value) == f"no entry of the corpus could be imported (1 skipped; the first: {first})"
    assert (tmp_path / "corpus" / "manifest.parquet").read_bytes() == before


def test_asllrp_clips_cut_by_signstream_times_at_the_videos_rate(tmp_path):
    from tests.test_signstream import SS3_DOCUMENT

    xml_dir, media = tmp_path / "xml", tmp_path / "media" / "scene31"
    xml_dir.mkdir()
    media.mkdir(parents=True)
    (xml_dir / "asllrp-demo.xml").write_text(SS3_DOCUMENT)
    (xml_dir / "notes.xml").write_text("<notes>not a SignStream export</notes>")
    make_video(media / "Lana_2012-06-14_scene31-camera1.mov", 50, fps=10.0)  # found by its name, in a sub-folder
    make_video(tmp_path / "media" / "Rachel_2012-06-28_scene4-camera1.mov", 30, fps=10.0)  # 3 s: too short
    own = {"xml_dir": str(xml_dir), "media_dir": str(tmp_path / "media")}
    m, summary, skipped = build(tmp_path, "asllrp", own, val_fraction=0.0, test_fraction=0.0)
    row = m.iloc[0]
    assert len(m) == 1 and row["glosses"] == "TOMORROW IX-1p GO" and row["task"] == "continuous"
    assert row["signer"] == "Lana Cook" and row["fps"] == 10.0 and row["translation"] == "Tomorrow I'll go."
    assert frame_numbers(tmp_path / "corpus" / row["video"]) == list(range(15, 42))  # 1.5 s - 4.25 s at 10 fps
    reasons = dict(zip(skipped["entry"], skipped["reason"]))
    assert reasons[str(xml_dir / "notes.xml")].startswith("unreadable XML")
    (rachel,) = [r for e, r in reasons.items() if e.startswith("asllrp-demo")]
    assert rachel.startswith("times outside the video") and "60.033" in rachel
    assert summary["split"] == "random"  # two signers: too few to split by signer
