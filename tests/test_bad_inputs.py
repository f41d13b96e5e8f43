"""Bad inputs, each fed to the code path a user's own would take (`prepare`'s corpus sources, `extract`, the `.pose`
reader, `recognize`, the model loaders), with what the user sees and what is kept asserted.

Every test carries a `bad_input` marker: the case, the one line the user sees, what is kept or skipped.
`tools/reliability_table.py` makes docs/RELIABILITY.md's table from these markers, and
tests/test_reliability_doc.py fails when that table is out of date. Inputs are tiny (48-pixel videos of a few
frames, corpora of a handful of entries) so that the whole file runs in well under a minute on one core.
"""

from __future__ import annotations

import csv
import json
import struct
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.corpus.manifest import read_manifest
from pipeline.corpus.sources import build_corpus
from tests.test_import_corpus import make_video

GOOD = ("good1", "good2")  # the well-formed entries every import below also holds: they must come through


def write_rows(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def import_corpus(source: str, own: dict, out: Path) -> tuple[pd.DataFrame, dict[str, str], dict]:
    """Build a corpus of `source` as `prepare` does; (manifest indexed by utt_id, {entry: skip reason}, summary)."""
    section = {"source": source, "min_train_occurrences": 1, "val_fraction": 0.0, "test_fraction": 0.0, source: own}
    summary = build_corpus(section, seed=0, out_dir=out, workers=1)
    skipped = pd.read_csv(out / "skipped.csv", keep_default_na=False)
    return read_manifest(out).set_index("utt_id"), dict(zip(skipped["entry"], skipped["reason"])), summary


def assert_good_imported(manifest: pd.DataFrame, corpus: Path, good: tuple[str, ...] = GOOD) -> None:
    """The well-formed entries are in the corpus with their clips, whatever else went wrong."""
    for utt in good:
        assert manifest.loc[utt, "n_frames"] > 0 and (corpus / manifest.loc[utt, "video"]).is_file()


def assert_nothing_partial(corpus: Path) -> None:
    """No half-written clip (`*.partial*`) anywhere in the corpus, and no corpus folder left half-built."""
    assert not [p.name for p in corpus.rglob("*partial*")]
    assert not corpus.with_name(corpus.name + ".partial").exists()


# --- CSV tables (`corpus.source: csv`) ---


@pytest.fixture(scope="module")
def csv_import(tmp_path_factory):
    """One table with a malformed row, an unknown split and times that are not times among good rows."""
    tmp = tmp_path_factory.mktemp("csv")
    for name in GOOD:
        make_video(tmp / f"{name}.mp4", 10)
    table = tmp / "corpus.csv"
    table.write_text(
        "video,glosses,split,start,end\n"
        "good1.mp4,IX-1p LIKE,train,,\n"  # line 2
        "good1.mp4,LIKE,train,,,extra field\n"  # 3: one field too many
        "good2.mp4,IX-1p,train,,\n"  # 4
        "good2.mp4,LIKE\n"  # 5: three fields too few
        "good2.mp4,LIKE,holdout,,\n"  # 6: not a split
        "good2.mp4,LIKE,train,abc,\n"  # 7: not a number
        "good2.mp4,LIKE,train,-1,\n"  # 8: before the video
        "good2.mp4,LIKE,train,0,inf\n"  # 9: not a time
    )
    return (*import_corpus("csv", {"table": str(table)}, tmp / "corpus"), tmp / "corpus")


@pytest.mark.bad_input(
    case="CSV row with the wrong number of fields",
    sees="`corpus.csv:3` in `skipped.csv`: `malformed row: its number of fields is not the header's`",
    kept="every other row imported; the row skipped by its line number",
)
def test_a_csv_row_with_the_wrong_number_of_fields_is_skipped_by_line(csv_import):
    manifest, skipped, summary, corpus = csv_import
    malformed = "malformed row: its number of fields is not the header's"
    assert skipped["corpus.csv:3"] == skipped["corpus.csv:5"] == malformed
    assert sorted(manifest.index) == ["good1", "good2"] and summary["skipped"] == 6
    assert_good_imported(manifest, corpus)
    assert_nothing_partial(corpus)


@pytest.mark.bad_input(
    case="CSV row with an unknown split",
    sees="`corpus.csv:6` in `skipped.csv`: `split 'holdout' is not one of ['train', 'val', 'test', 'test_unseen']`",
    kept="every other row imported; the row skipped by its line number",
)
def test_a_csv_row_with_an_unknown_split_is_skipped(csv_import):
    manifest, skipped, _, corpus = csv_import
    assert skipped["corpus.csv:6"] == "split 'holdout' is not one of ['train', 'val', 'test', 'test_unseen']"
    assert_good_imported(manifest, corpus)


@pytest.mark.bad_input(
    case="CSV start / end that are not times in the video (`abc`, `-1`, `inf`)",
    sees="`corpus.csv:7` in `skipped.csv`: `start 'abc' is not a number of seconds` (`-1`, `inf`: `... is not a time "
    "in the video`)",
    kept="every other row imported; each such row skipped by its line number",
)
def test_csv_times_that_are_not_times_are_skipped(csv_import):
    manifest, skipped, _, corpus = csv_import
    assert skipped["corpus.csv:7"] == "start 'abc' is not a number of seconds"
    assert skipped["corpus.csv:8"] == "start '-1' is not a time in the video"
    assert skipped["corpus.csv:9"] == "end 'inf' is not a time in the video"
    assert_good_imported(manifest, corpus)


@pytest.fixture(scope="module")
def previous(tmp_path_factory):
    """A corpus already built (`data/corpus` of an earlier `prepare`), which a failed build must leave as it was."""
    tmp = tmp_path_factory.mktemp("previous")
    make_video(tmp / "good1.mp4", 10)
    table = write_rows(tmp / "ok.csv", ["video", "glosses", "split"], [["good1.mp4", "IX-1p LIKE", "train"]])
    import_corpus("csv", {"table": str(table)}, tmp / "corpus")
    return tmp / "corpus", (tmp / "corpus/manifest.parquet").read_bytes()


def assert_stops_and_keeps_previous(previous, source: str, own: dict, error: type, message: str) -> None:
    """The build stops with exactly `message`, and the previous corpus is byte for byte what it was."""
    corpus, before = previous
    with pytest.raises(error) as err:
        import_corpus(source, own, corpus)
    assert str(err.value) == message and "\n" not in message
    assert (corpus / "manifest.parquet").read_bytes() == before
    assert not (corpus.with_name("corpus.partial") / "manifest.parquet").exists()


@pytest.mark.bad_input(
    case="CSV table that is not UTF-8 text",
    sees="`prepare` stops: `corpus.csv.table: <table> is not a readable CSV table ('utf-8' codec can't decode byte "
    "0xff in position 0: invalid start byte)`",
    kept="the previous corpus, untouched",
)
def test_a_csv_table_that_is_not_text_stops_prepare(previous, tmp_path):
    table = tmp_path / "t.csv"
    table.write_bytes(b"\xff\xfe\x00v\x00i\x00d" + bytes(range(256)))
    said = f"corpus.csv.table: {table} is not a readable CSV table ('utf-8' codec can't decode byte 0xff in position 0:"
    assert_stops_and_keeps_previous(previous, "csv", {"table": str(table)}, ValueError,
                                    f"{said} invalid start byte)")  # fmt: skip


@pytest.mark.bad_input(
    case="CSV table without a required column",
    sees="`prepare` stops: `corpus.csv.table: <table> has no column ['glosses'] (its header: ['video', 'split'])`",
    kept="the previous corpus, untouched",
)
def test_a_csv_table_without_a_required_column_stops_prepare(previous, tmp_path):
    table = write_rows(tmp_path / "t.csv", ["video", "split"], [["good1.mp4", "train"]])
    message = f"corpus.csv.table: {table} has no column ['glosses'] (its header: ['video', 'split'])"
    assert_stops_and_keeps_previous(previous, "csv", {"table": str(table)}, ValueError, message)


@pytest.mark.bad_input(
    case="CSV table with a header and no rows, or empty",
    sees="`prepare` stops: `corpus.csv.table: <table> has no rows under its header` (an empty file: `... is empty: "
    "no header row`)",
    kept="the previous corpus, untouched",
)
def test_a_csv_table_without_rows_stops_prepare_saying_so(previous, tmp_path):
    table = write_rows(tmp_path / "t.csv", ["video", "glosses", "split"], [])
    message = f"corpus.csv.table: {table} has no rows under its header"
    assert_stops_and_keeps_previous(previous, "csv", {"table": str(table)}, ValueError, message)
    (tmp_path / "empty.csv").write_bytes(b"")
    message = f"corpus.csv.table: {tmp_path / 'empty.csv'} is empty: no header row"
    assert_stops_and_keeps_previous(previous, "csv", {"table": str(tmp_path / "empty.csv")}, ValueError, message)


# --- glosses ---


@pytest.fixture(scope="module")
def gloss_import(tmp_path_factory):
    """A table whose test row has a gloss train never has, and whose train row has a gloss spelled `<unk>`."""
    tmp = tmp_path_factory.mktemp("glosses")
    for name in (*GOOD, "unseen", "special", "test_ok"):
        make_video(tmp / f"{name}.mp4", 5)
    table = write_rows(tmp / "corpus.csv", ["video", "glosses", "split"], [
        ["good1.mp4", "IX-1p LIKE", "train"],  # line 2
        ["good2.mp4", "IX-1p", "train"],  # 3
        ["unseen.mp4", "IX-1p BOOK", "test"],  # 4: BOOK is in no train row
        ["special.mp4", "<unk> LIKE", "train"],  # 5: a placeholder spelled as signx's unknown-gloss token
        ["test_ok.mp4", "LIKE IX-1p", "test"],  # 6
    ])  # fmt: skip
    return (*import_corpus("csv", {"table": str(table)}, tmp / "corpus"), tmp / "corpus")


@pytest.mark.bad_input(
    case="gloss in test that train never has",
    sees="`corpus.csv:4` in `skipped.csv`: `glosses not in the vocabulary: BOOK`",
    kept="the rest imported; test never holds a gloss unseen in train",
)
def test_a_test_gloss_unseen_in_train_skips_its_utterance(gloss_import):
    manifest, skipped, summary, corpus = gloss_import
    assert skipped["corpus.csv:4"] == "glosses not in the vocabulary: BOOK"
    assert manifest.loc["test_ok", "split"] == "test" and "unseen" not in manifest.index
    assert summary["n_glosses"] == 2 and summary["skipped_by_reason"]["glosses not in the vocabulary"] == 1
    assert_good_imported(manifest, corpus)


@pytest.mark.bad_input(
    case="gloss spelled as a special token (`<unk>`, `<pad>`, ...)",
    sees="`corpus.csv:5` in `skipped.csv`: `glosses spelled as signx's special tokens: <unk>`",
    kept="the rest imported; the row skipped by its line number",
)
def test_a_gloss_spelled_as_a_special_token_skips_its_utterance(gloss_import):
    manifest, skipped, summary, corpus = gloss_import
    assert skipped["corpus.csv:5"] == "glosses spelled as signx's special tokens: <unk>"
    assert "special" not in manifest.index and sorted(manifest.index) == ["good1", "good2", "test_ok"]
    assert_good_imported(manifest, corpus)
    assert_nothing_partial(corpus)


# --- WLASL JSON (`corpus.source: wlasl`) ---


def wlasl_own(tmp: Path, content) -> dict:
    path = tmp / "WLASL_v0.3.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return {"json_path": str(path), "video_dir": str(tmp), "subset": 100}


def instance(video_id: str, **fields) -> dict:
    return {"video_id": video_id, "split": "train", "signer_id": 1, "frame_start": 1, "frame_end": -1, **fields}


@pytest.fixture(scope="module")
def wlasl_import(tmp_path_factory):
    """WLASL's JSON with malformed instances and gloss entries among good ones."""
    tmp = tmp_path_factory.mktemp("wlasl")
    for name in GOOD:
        make_video(tmp / f"{name}.mp4", 5)
    content = [
        {"gloss": "book", "instances": [instance("good1"), {"split": "train"}, "03", instance("04", frame_start="x")]},
        {"gloss": "drink", "instances": 5},
        {"gloss": "cat", "instances": {"video_id": "05"}},
        {"gloss": "computer", "instances": [instance("good2")]},
    ]
    return (*import_corpus("wlasl", wlasl_own(tmp, content), tmp / "corpus"), tmp / "corpus")


@pytest.mark.bad_input(
    case="WLASL instance that is malformed (no `video_id`, not an object, `frame_start` not a number)",
    sees="`book[1]` in `skipped.csv`: `unreadable instance: no 'video_id'` (`book[2]`: `... an instance is a JSON "
    "object, not a str`; `04`: `... invalid literal for int() with base 10: 'x'`)",
    kept="every other instance imported; each such instance skipped by its video_id or gloss[index]",
)
def test_malformed_wlasl_instances_are_skipped(wlasl_import):
    manifest, skipped, _, corpus = wlasl_import
    assert skipped["book[1]"] == "unreadable instance: no 'video_id'"
    assert skipped["book[2]"] == "unreadable instance: an instance is a JSON object, not a str"
    assert skipped["04"] == "unreadable instance: invalid literal for int() with base 10: 'x'"
    assert sorted(manifest.index) == ["good1", "good2"]
    assert_good_imported(manifest, corpus)


@pytest.mark.bad_input(
    case="WLASL gloss entry whose `instances` is not a list",
    sees="`<json>[1]` in `skipped.csv`: `gloss entry 'drink': its instances are not a list (got int)`",
    kept="every other gloss entry imported",
)
def test_a_wlasl_gloss_entry_without_a_list_of_instances_is_skipped(wlasl_import):
    manifest, skipped, summary, corpus = wlasl_import
    json_path = corpus.parent / "WLASL_v0.3.json"
    assert skipped[f"{json_path}[1]"] == "gloss entry 'drink': its instances are not a list (got int)"
    assert skipped[f"{json_path}[2]"] == "gloss entry 'cat': its instances are not a list (got dict)"
    assert summary["n_glosses"] == 2 and summary["skipped"] == 5
    assert_good_imported(manifest, corpus)


@pytest.mark.bad_input(
    case="WLASL JSON that is not WLASL's (an object, not a list of glosses)",
    sees="`prepare` stops: `corpus.wlasl.json_path: <json> is not WLASL's JSON (a list of glosses with instances)`",
    kept="the previous corpus, untouched",
)
def test_json_that_is_not_wlasls_stops_prepare(previous, tmp_path):
    own = wlasl_own(tmp_path, {"gloss": "book", "instances": []})
    message = f"corpus.wlasl.json_path: {own['json_path']} is not WLASL's JSON (a list of glosses with instances)"
    assert_stops_and_keeps_previous(previous, "wlasl", own, ValueError, message)


@pytest.mark.bad_input(
    case="WLASL JSON nested too deeply to parse (`[[[[...` 100 000 deep)",
    sees="`prepare` stops: `corpus.wlasl.json_path: <json> is not valid JSON (nested too deeply)`",
    kept="the previous corpus, untouched",
)
def test_json_nested_too_deeply_stops_prepare_naming_the_param(previous, tmp_path):
    own = wlasl_own(tmp_path, "[" * 100_000 + "]" * 100_000)
    message = f"corpus.wlasl.json_path: {own['json_path']} is not valid JSON (nested too deeply)"
    assert_stops_and_keeps_previous(previous, "wlasl", own, ValueError, message)


# --- .pose files (`corpus.source: pose`, then `extract` with the `posefile` backend) ---


def mediapipe_pose(path: Path, n_frames: int = 6, fps: float = 25.0) -> Path:
    """A Holistic .pose file (pose-format's writer, via signx's export) with every frame detected."""
    from extractors.base import TrackFrames
    from pipeline.posefile import write_pose_file

    values = np.random.default_rng(n_frames).uniform(0.1, 0.9, (n_frames, 258)).astype(np.float32)
    write_pose_file(path, "mediapipe", TrackFrames(values, np.ones(n_frames, bool)), fps, 64, 64)
    return path


def edited_pose(src: Path, dst: Path, edit) -> Path:
    """`src` read with pose-format, changed by `edit(header, data, confidence)` -> (header, data, confidence, fps),
    written to `dst` with pose-format's writer."""
    from pose_format import Pose
    from pose_format.numpy import NumPyPoseBody

    pose = Pose.read(src.read_bytes())
    data, conf = np.ma.getdata(pose.body.data).copy(), np.ma.getdata(pose.body.confidence).copy()
    header, data, conf, fps = edit(pose.header, data, conf)
    with open(dst, "wb") as f:
        Pose(header, NumPyPoseBody(fps, data, conf)).write(f)
    return dst


def one_component_pose(path: Path, component: str) -> Path:
    """A .pose file holding a single Holistic component (hand-only and face-only files exist in the wild)."""
    from pose_format import Pose
    from pose_format.numpy import NumPyPoseBody
    from pose_format.pose_header import PoseHeader, PoseHeaderComponent, PoseHeaderDimensions

    points = [f"P{i}" for i in range(21)]
    only = PoseHeaderComponent(component, points, [], [(255, 0, 0)], "XYZC")
    body = NumPyPoseBody(25.0, np.ones((3, 1, 21, 3), np.float32), np.ones((3, 1, 21), np.float32))
    with open(path, "wb") as f:
        Pose(PoseHeader(0.2, PoseHeaderDimensions(64, 64, 0), [only]), body).write(f)
    return path


def nan_points(header, data, conf):
    """Frame 0: the nose's x NaN, the left shoulder's z infinite, the right shoulder's confidence NaN; frame 1:
    every coordinate NaN."""
    data[0, 0, 0, 0], data[0, 0, 11, 2], conf[0, 0, 12] = np.nan, np.inf, np.nan
    data[1] = np.nan
    return header, data, conf, 25.0


@pytest.fixture(scope="module")
def pose_import(tmp_path_factory):
    """A folder of .pose files, good and bad, imported and then extracted as `dvc repro` would."""
    from pose_format.pose_header import PoseHeaderDimensions

    from pipeline import extract

    tmp = tmp_path_factory.mktemp("poses")
    poses = tmp / "poses"
    poses.mkdir()
    good = mediapipe_pose(poses / "good1.pose")
    mediapipe_pose(poses / "good2.pose", n_frames=8)
    edited_pose(good, poses / "nan.pose", nan_points)
    one_component_pose(poses / "hand_only.pose", "RIGHT_HAND_LANDMARKS")
    one_component_pose(poses / "face_only.pose", "FACE_LANDMARKS")
    edited_pose(good, poses / "zero_frames.pose", lambda h, d, c: (h, d[:0], c[:0], 25.0))
    edited_pose(good, poses / "fps0.pose", lambda h, d, c: (h, d, c, 0.0))
    edited_pose(good, poses / "width0.pose", lambda h, d, c: (
        type(h)(h.version, PoseHeaderDimensions(0, 64, 0), h.components), d, c, 25.0))  # fmt: skip
    (poses / "truncated.pose").write_bytes(good.read_bytes()[:-40])
    (poses / "version.pose").write_bytes(struct.pack("<f", 0.3) + good.read_bytes()[4:])
    (poses / "text.pose").write_text("hello, not a pose file\n")
    names = ["good1", "good2", "nan", "hand_only", "face_only", "zero_frames", "fps0", "width0", "truncated",
             "version", "text", "missing"]  # fmt: skip
    table = write_rows(tmp / "poses.csv", ["pose", "glosses", "split"], [[f"{n}.pose", "IX-1p LIKE", "train"]
                                                                           for n in names])  # fmt: skip
    own = {"pose_dir": str(poses), "glosses_table": str(table)}
    manifest, skipped, summary = import_corpus("pose", own, tmp / "corpus")
    lines = {n: f"poses.csv:{k + 2}" for k, n in enumerate(names)}
    report = extract.extract_track("mediapipe", tmp / "corpus", tmp / "tracks", workers=1)
    return manifest, {n: skipped.get(line) for n, line in lines.items()}, summary, tmp, report


def assert_good_poses_imported(pose_import) -> None:
    """The well-formed files are imported and extracted, and nothing half-written is left."""
    from pipeline.store import FrameStore

    manifest, _, _, tmp, report = pose_import
    store = FrameStore(tmp / "tracks/mediapipe.zarr")
    for utt, n in (("good1", 6), ("good2", 8)):
        assert manifest.loc[utt, "n_frames"] == n and store.read(utt, "mask").all()
    assert report["skipped"] == [] and sorted(manifest.index) == ["good1", "good2", "nan"]
    assert_nothing_partial(tmp / "corpus")


@pytest.mark.bad_input(
    case="`.pose` file with NaN / infinite coordinates or confidences",
    sees="nothing: imported; a point with a NaN or infinite number reads as not found (zeros), a frame without one "
    "found pose point is undetected",
    kept="the file; no NaN reaches the track store (frame 1, all NaN: masked)",
)
def test_nan_and_inf_in_a_pose_file_read_as_points_not_found(pose_import):
    from pipeline.store import FrameStore

    manifest, skipped, _, tmp, _ = pose_import
    assert skipped["nan"] is None and manifest.loc["nan", "n_frames"] == 6
    store = FrameStore(tmp / "tracks/mediapipe.zarr")
    values, mask = store.read("nan", "values"), store.read("nan", "mask").astype(bool)
    assert np.isfinite(values).all() and mask.tolist() == [True, False, True, True, True, True]
    assert not values[0, 0:4].any() and not values[0, 44:52].any() and values[0, 4:8].all()  # nose, shoulders: out
    assert not values[1].any()
    assert_good_poses_imported(pose_import)


@pytest.mark.bad_input(
    case="`.pose` file missing the components a track needs (hands without POSE_LANDMARKS)",
    sees="`poses.csv:<line>` in `skipped.csv`: `unreadable file: <file>: Holistic hands without POSE_LANDMARKS (a "
    "frame without the pose is undetected); no signx track to fill: components found ['RIGHT_HAND_LANDMARKS'], "
    "expected ...`",
    kept="every other file imported",
)
def test_a_pose_file_of_hands_alone_is_skipped_naming_pose_landmarks(pose_import):
    _, skipped, _, tmp, _ = pose_import
    start = f"unreadable file: {tmp / 'poses/hand_only.pose'}: Holistic hands without POSE_LANDMARKS"
    assert skipped["hand_only"].startswith(start)
    assert "components found ['RIGHT_HAND_LANDMARKS'], expected POSE_LANDMARKS" in skipped["hand_only"]
    assert_good_poses_imported(pose_import)


@pytest.mark.bad_input(
    case="`.pose` file with no component signx reads (FACE_LANDMARKS alone)",
    sees="`poses.csv:<line>` in `skipped.csv`: `unreadable file: <file>: no signx track to fill: components found "
    "['FACE_LANDMARKS'], expected POSE_LANDMARKS (+ ...) for the mediapipe track; pose_keypoints_2d (+ ...) or "
    "BODY_135 for the dwpose track`",
    kept="every other file imported",
)
def test_a_pose_file_without_a_signx_component_is_skipped_listing_what_it_has(pose_import):
    _, skipped, _, tmp, _ = pose_import
    found = "no signx track to fill: components found ['FACE_LANDMARKS']"
    start = f"unreadable file: {tmp / 'poses/face_only.pose'}: {found}"
    assert skipped["face_only"].startswith(start) and skipped["face_only"].endswith("or BODY_135 for the dwpose track")
    assert_good_poses_imported(pose_import)


@pytest.mark.bad_input(
    case="`.pose` file with zero frames",
    sees="`poses.csv:<line>` in `skipped.csv`: `unreadable file: <file>: the file has 0 frames`",
    kept="every other file imported",
)
def test_a_pose_file_of_zero_frames_is_skipped(pose_import):
    _, skipped, _, tmp, _ = pose_import
    assert skipped["zero_frames"] == f"unreadable file: {tmp / 'poses/zero_frames.pose'}: the file has 0 frames"
    assert_good_poses_imported(pose_import)


@pytest.mark.bad_input(
    case="`.pose` file whose header says 0 frames per second",
    sees="`poses.csv:<line>` in `skipped.csv`: `unreadable file: <file>: fps 0 is not a frame rate`",
    kept="every other file imported",
)
def test_a_pose_file_without_a_frame_rate_is_skipped(pose_import):
    _, skipped, summary, tmp, _ = pose_import
    assert skipped["fps0"] == f"unreadable file: {tmp / 'poses/fps0.pose'}: fps 0 is not a frame rate"
    assert np.isfinite(summary["hours"]) and summary["hours"] > 0
    assert_good_poses_imported(pose_import)


@pytest.mark.bad_input(
    case="`.pose` file whose header gives a width or height of 0",
    sees="`poses.csv:<line>` in `skipped.csv`: `unreadable file: <file>: header width 0 / height 64: a dimension of "
    "0 leaves the pixel coordinates impossible to normalise`",
    kept="every other file imported",
)
def test_a_pose_file_of_width_zero_is_skipped(pose_import):
    _, skipped, _, tmp, _ = pose_import
    said = "header width 0 / height 64: a dimension of 0 leaves the pixel coordinates impossible to normalise"
    assert skipped["width0"] == f"unreadable file: {tmp / 'poses/width0.pose'}: {said}"
    assert_good_poses_imported(pose_import)


@pytest.mark.bad_input(
    case="truncated `.pose` file",
    sees="`poses.csv:<line>` in `skipped.csv`: `unreadable file: <file>: not a readable pose-format v0.2 file (...)`",
    kept="every other file imported",
)
def test_a_truncated_pose_file_is_skipped(pose_import):
    _, skipped, _, tmp, _ = pose_import
    assert skipped["truncated"].startswith(
        f"unreadable file: {tmp / 'poses/truncated.pose'}: not a readable pose-format v0.2 file ("
    )
    assert_good_poses_imported(pose_import)


@pytest.mark.bad_input(
    case="`.pose` file of a version pose-format does not read, or not a `.pose` file at all",
    sees="`poses.csv:<line>` in `skipped.csv`: `unreadable file: <file>: pose-format version 0.3 is not supported "
    "(pose-format reads 0.0, 0.1, 0.2)` (a text file: its first four bytes read as the version)",
    kept="every other file imported",
)
def test_a_pose_file_of_another_version_or_none_is_skipped(pose_import):
    _, skipped, _, tmp, _ = pose_import
    said = "is not supported (pose-format reads 0.0, 0.1, 0.2)"
    assert skipped["version"] == f"unreadable file: {tmp / 'poses/version.pose'}: pose-format version 0.3 {said}"
    assert skipped["text"] == f"unreadable file: {tmp / 'poses/text.pose'}: pose-format version 1.14314e+27 {said}"
    assert_good_poses_imported(pose_import)


@pytest.mark.bad_input(
    case="`.pose` file named in the table but not there",
    sees="`poses.csv:<line>` in `skipped.csv`: `missing file: <file>: no such .pose file`",
    kept="every other file imported",
)
def test_a_missing_pose_file_is_skipped(pose_import):
    _, skipped, summary, tmp, _ = pose_import
    assert skipped["missing"] == f"missing file: {tmp / 'poses/missing.pose'}: no such .pose file"
    assert summary["skipped_by_reason"] == {"missing file": 1, "unreadable file": 8}
    assert_good_poses_imported(pose_import)


# --- videos (`corpus.source: csv`, then `extract` with the real MediaPipe backend) ---


def av_video(path: Path, pts_ms: list[int], size: tuple[int, int] = (48, 48), rotation: int | None = None,
             streamable: bool = False) -> Path:  # fmt: skip
    """An MPEG-4 video written with PyAV (FFmpeg), which OpenCV's writer cannot make: frame k shown at `pts_ms[k]`
    (uneven: a variable frame rate), a display-rotation flag, or the index before the frames (`faststart`, as
    streamed downloads are). Frame k is black with its top-left quarter white and a column k * 4 pixels in."""
    import av

    width, height = size
    options = {"movflags": "faststart"} if streamable else {}
    with av.open(str(path), "w", options=options) as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        out.start_encoding()  # the header is written even when no frame follows
        for k, pts in enumerate(pts_ms):
            out.mux(stream.encode(_frame(av, quarter_frame(width, height, k), pts)))
        out.mux(stream.encode())
    return path


def _frame(av, rgb: np.ndarray, pts: int):
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    frame.pts, frame.time_base = pts, Fraction(1, 1000)
    return frame


def quarter_frame(width: int, height: int, k: int = 0) -> np.ndarray:
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[: height // 2, : width // 2] = 255
    rgb[:, (k * 4) % width] = 128
    return rgb


def cv2_video(path: Path, n_frames: int, size: tuple[int, int], color: bool = True) -> Path:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, size, color)
    for k in range(n_frames):
        rgb = quarter_frame(*size, k)
        writer.write(rgb[..., 0] if not color else rgb)
    writer.release()
    return path


VFR_MS = [0, 100, 150, 160, 400, 900, 1000, 1010, 1020, 1500]  # 10 frames in 1.6 s: 6.25 fps on average

VIDEO_ROWS = {  # name: (video file, start, end) of a table row
    "good1": ("good1.mp4", "", ""),
    "good2": ("good2.mp4", "", ""),
    "zero_byte": ("zero_byte.mp4", "", ""),
    "truncated": ("truncated.mp4", "", ""),
    "truncated_streamable": ("truncated_streamable.mp4", "", ""),
    "not_a_video": ("not_a_video.mp4", "", ""),
    "zero_frames": ("zero_frames.mp4", "", ""),
    "missing": ("gone.mp4", "", ""),
    "outside": ("good1.mp4", "5", "9"),
    "gray": ("gray.mp4", "", ""),
    "uhd": ("uhd.mp4", "", ""),
    "rotated": ("rotated.mp4", "", ""),
    "vfr": ("vfr.mp4", "", ""),
    "vfr_span": ("vfr.mp4", "0.4", "1.05"),
    "damaged_later": ("damaged_later.mp4", "", ""),
}


@pytest.fixture(scope="module")
def video_import(tmp_path_factory):
    """Every kind of video below in one table, imported as `prepare` does; then one imported clip is emptied (a
    disk error, an interrupted copy) and the corpus extracted with MediaPipe Holistic as `extract@mediapipe` does."""
    from pipeline import extract

    tmp = tmp_path_factory.mktemp("videos")
    for name in (*GOOD, "damaged_later"):
        make_video(tmp / f"{name}.mp4", 10)
    (tmp / "zero_byte.mp4").write_bytes(b"")
    whole = make_video(tmp / "whole.mp4", 20).read_bytes()
    (tmp / "truncated.mp4").write_bytes(whole[: len(whole) // 2])  # OpenCV writes its index last: cut off
    streamable = av_video(tmp / "streamable.mp4", list(range(0, 2000, 100)), streamable=True).read_bytes()
    (tmp / "truncated_streamable.mp4").write_bytes(streamable[: len(streamable) * 2 // 3])
    (tmp / "not_a_video.mp4").write_text("hello, not a video\n" * 20)
    av_video(tmp / "zero_frames.mp4", [])
    cv2_video(tmp / "gray.mp4", 5, (48, 48), color=False)
    cv2_video(tmp / "uhd.mp4", 2, (3840, 2160))
    av_video(tmp / "rotated.mp4", [0, 100, 200], size=(64, 48), rotation=90)
    av_video(tmp / "vfr.mp4", VFR_MS)
    rows = [[video, "IX-1p LIKE", "train", start, end] for video, start, end in VIDEO_ROWS.values()]
    table = write_rows(tmp / "corpus.csv", ["video", "glosses", "split", "start", "end"], rows)
    manifest, skipped, summary = import_corpus("csv", {"table": str(table)}, tmp / "corpus")
    (tmp / "corpus" / manifest.loc["damaged_later", "video"]).write_bytes(b"")
    report = extract.extract_track("mediapipe", tmp / "corpus", tmp / "tracks", backend="holistic", workers=1,
                                   report=tmp / "metrics/extract/mediapipe.json")  # fmt: skip
    lines = {name: f"corpus.csv:{k + 2}" for k, name in enumerate(VIDEO_ROWS)}
    return manifest, {n: skipped.get(line) for n, line in lines.items()}, summary, tmp, report


def assert_good_videos_through(video_import) -> None:
    """The well-formed videos are imported and extracted, and nothing half-written is left."""
    from pipeline.store import FrameStore

    manifest, _, _, tmp, report = video_import
    assert_good_imported(manifest, tmp / "corpus")
    store = FrameStore(tmp / "tracks/mediapipe.zarr")
    for utt in GOOD:
        assert store.read(utt, "mask").shape == (10,)
    assert [s["utt_id"] for s in report["skipped"]] == ["damaged_later"]
    assert_nothing_partial(tmp / "corpus")
    assert not list((tmp / "tracks").glob("*.parts")) and not list((tmp / "tracks").glob("*.partial"))


CANNOT_OPEN = (
    "`corpus.csv:<line>` in `skipped.csv`: `unreadable video: <video>: cannot open video (corrupt or unsupported)`"
)


def _unreadable(tmp: Path, name: str) -> str:
    return f"unreadable video: {tmp / name}: cannot open video (corrupt or unsupported)"


@pytest.mark.bad_input(
    case="zero-byte video",
    sees=CANNOT_OPEN,
    kept="every other video imported and extracted; no clip written for it",
)
def test_a_zero_byte_video_is_skipped(video_import):
    manifest, skipped, _, tmp, _ = video_import
    assert skipped["zero_byte"] == _unreadable(tmp, "zero_byte.mp4") and "zero_byte" not in manifest.index
    assert not list((tmp / "corpus/videos").glob("zero_byte*"))
    assert_good_videos_through(video_import)


@pytest.mark.bad_input(
    case="truncated video (its index cut off)",
    sees=CANNOT_OPEN,
    kept="every other video imported and extracted; no clip written for it",
)
def test_a_truncated_video_is_skipped(video_import):
    manifest, skipped, _, tmp, _ = video_import
    assert skipped["truncated"] == _unreadable(tmp, "truncated.mp4") and "truncated" not in manifest.index
    assert_good_videos_through(video_import)


@pytest.mark.bad_input(
    case="truncated streamable video (index first, frames cut off: a download cut short)",
    sees="`corpus.csv:<line>` in `skipped.csv`: `unreadable video: <video>: truncated or damaged: 7 of the 20 "
    "frames its container lists decode`",
    kept="every other video imported and extracted; no clip written for it",
)
def test_a_truncated_streamable_video_is_skipped_not_imported_short(video_import):
    manifest, skipped, _, tmp, _ = video_import
    said = "truncated or damaged: 7 of the 20 frames its container lists decode"
    assert skipped["truncated_streamable"] == f"unreadable video: {tmp / 'truncated_streamable.mp4'}: {said}"
    assert "truncated_streamable" not in manifest.index
    assert_good_videos_through(video_import)


@pytest.mark.bad_input(
    case="file that is not a video, named `.mp4`",
    sees=CANNOT_OPEN,
    kept="every other video imported and extracted; no clip written for it",
)
def test_a_file_that_is_not_a_video_is_skipped(video_import):
    manifest, skipped, _, tmp, _ = video_import
    assert skipped["not_a_video"] == _unreadable(tmp, "not_a_video.mp4") and "not_a_video" not in manifest.index
    assert_good_videos_through(video_import)


@pytest.mark.bad_input(
    case="video with zero frames (a container with a video stream and no frame)",
    sees=CANNOT_OPEN,
    kept="every other video imported and extracted; no clip written for it",
)
def test_a_video_of_zero_frames_is_skipped(video_import):
    manifest, skipped, _, tmp, _ = video_import
    assert skipped["zero_frames"] == _unreadable(tmp, "zero_frames.mp4") and "zero_frames" not in manifest.index
    assert_good_videos_through(video_import)


@pytest.mark.bad_input(
    case="video named in the table but not there",
    sees="`corpus.csv:<line>` in `skipped.csv`: `missing video: <video>: no such video`",
    kept="every other video imported and extracted",
)
def test_a_missing_video_is_skipped(video_import):
    _, skipped, summary, tmp, _ = video_import
    assert skipped["missing"] == f"missing video: {tmp / 'gone.mp4'}: no such video"
    assert summary["skipped_by_reason"]["missing video"] == 1
    assert_good_videos_through(video_import)


@pytest.mark.bad_input(
    case="start / end outside the video",
    sees="`corpus.csv:<line>` in `skipped.csv`: `times outside the video: <video>: the span 5-9 seconds (frames 50 "
    "to 90) is outside the video, which ends before frame 50 at 10 fps`",
    kept="every other video imported and extracted; no clip written for it",
)
def test_times_outside_the_video_are_skipped(video_import):
    _, skipped, _, tmp, _ = video_import
    said = "the span 5-9 seconds (frames 50 to 90) is outside the video, which ends before frame 50 at 10 fps"
    assert skipped["outside"] == f"times outside the video: {tmp / 'good1.mp4'}: {said}"
    assert_good_videos_through(video_import)


@pytest.mark.bad_input(
    case="video emptied or damaged after `prepare` (a disk error, an interrupted copy)",
    sees='a recorded skip, in `metrics/extract/<track>.json` and the track store\'s attributes: `"skipped": '
    '[{"utt_id": ..., "reason": "VideoError: <video>: cannot open video (corrupt or unsupported)"}]`',
    kept="every other utterance extracted; the skipped one all masked in the track store (so `fuse` and training run); "
    "no batch or store left half-written",
)
def test_a_video_damaged_after_prepare_is_a_recorded_skip_in_extract(video_import):
    from pipeline.store import FrameStore

    manifest, _, _, tmp, report = video_import
    video = tmp / "corpus" / manifest.loc["damaged_later", "video"]
    reason = f"VideoError: {video}: cannot open video (corrupt or unsupported)"
    assert report["skipped"] == [{"utt_id": "damaged_later", "reason": reason}]
    assert json.loads((tmp / "metrics/extract/mediapipe.json").read_text())["skipped"] == report["skipped"]
    store = FrameStore(tmp / "tracks/mediapipe.zarr")
    assert store.attrs["skipped"] == report["skipped"] and not store.read("damaged_later", "mask").any()
    assert store.read("damaged_later", "mask").shape == (10,)
    assert_good_videos_through(video_import)


@pytest.mark.bad_input(
    case="grayscale video",
    sees="nothing: imported and extracted like a colour one",
    kept="the video as it is; every reader decodes it to 3-channel RGB",
)
def test_a_grayscale_video_is_read_as_rgb(video_import):
    from pipeline.video import FrameSpec, read_video

    manifest, skipped, _, tmp, report = video_import
    assert skipped["gray"] is None and manifest.loc["gray", ["n_frames", "width", "height"]].tolist() == [5, 48, 48]
    frames = read_video(tmp / "corpus" / manifest.loc["gray", "video"], FrameSpec(size=16))
    assert frames.shape == (5, 16, 16, 3) and (frames[..., 0] == frames[..., 2]).all()
    assert "gray" not in {s["utt_id"] for s in report["skipped"]}
    assert_good_videos_through(video_import)


@pytest.mark.bad_input(
    case="4K video (3840 x 2160)",
    sees="nothing: imported and extracted like any other",
    kept="the video as it is (manifest width 3840, height 2160); each reader scales its frames down",
)
def test_a_4k_video_is_imported_and_extracted(video_import):
    from pipeline.store import FrameStore
    from pipeline.video import FrameSpec, read_video

    manifest, skipped, _, tmp, report = video_import
    assert skipped["uhd"] is None
    assert manifest.loc["uhd", ["n_frames", "width", "height"]].tolist() == [2, 3840, 2160]
    assert read_video(tmp / "corpus" / manifest.loc["uhd", "video"], FrameSpec(size=32)).shape == (2, 32, 32, 3)
    assert FrameStore(tmp / "tracks/mediapipe.zarr").read("uhd", "mask").shape == (2,)
    assert "uhd" not in {s["utt_id"] for s in report["skipped"]}
    assert_good_videos_through(video_import)


@pytest.mark.bad_input(
    case="video with a rotation flag (a phone's portrait video)",
    sees="nothing: imported and extracted upright, as a player shows it",
    kept="the video as it is (its flag too); the manifest's width and height are the upright frame's, and every "
    "reader (extract, Stage II, recognize) decodes it upright",
)
def test_a_rotated_video_is_read_upright(video_import):
    from pipeline.videoio import read_frames

    manifest, skipped, _, tmp, report = video_import
    assert skipped["rotated"] is None
    assert manifest.loc["rotated", ["n_frames", "width", "height"]].tolist() == [3, 48, 64]  # stored 64 x 48
    frame = read_frames(tmp / "corpus" / manifest.loc["rotated", "video"])[0].astype(int)
    upright = np.rot90(quarter_frame(64, 48), 1)  # the flag says: turn 90 degrees anticlockwise to show
    assert frame.shape == upright.shape and np.abs(frame - upright).mean() < 8
    assert "rotated" not in {s["utt_id"] for s in report["skipped"]}
    assert_good_videos_through(video_import)


@pytest.mark.bad_input(
    case="video with a variable frame rate, imported whole",
    sees="nothing: imported whole; the manifest's fps is its average rate (6.25)",
    kept="the video as it is, every frame in order (frame numbers are what every later stage uses)",
)
def test_a_variable_frame_rate_video_is_imported_whole(video_import):
    manifest, skipped, _, _, report = video_import
    assert skipped["vfr"] is None and manifest.loc["vfr", ["n_frames", "fps"]].tolist() == [10, 6.25]
    assert "vfr" not in {s["utt_id"] for s in report["skipped"]}
    assert_good_videos_through(video_import)


@pytest.mark.bad_input(
    case="video with a variable frame rate, cut by start / end in seconds",
    sees="`corpus.csv:<line>` in `skipped.csv`: `variable frame rate: <video>: frame 2 is at 0.150 s, not at 0.320 s "
    "as at its 6.25 fps: ... re-encode it at a constant frame rate (ffmpeg -i IN -fps_mode cfr OUT)`",
    kept="every other video imported; no clip written for it (it would have held the wrong frames)",
)
def test_a_variable_frame_rate_video_is_not_cut_by_seconds(video_import):
    manifest, skipped, summary, tmp, _ = video_import
    said = f"variable frame rate: {tmp / 'vfr.mp4'}: frame 2 is at 0.150 s, not at 0.320 s as at its 6.25 fps"
    assert skipped["vfr_span"].startswith(said)
    assert skipped["vfr_span"].endswith("re-encode it at a constant frame rate (ffmpeg -i IN -fps_mode cfr OUT)")
    assert "vfr-2" not in manifest.index and summary["skipped_by_reason"]["variable frame rate"] == 1
    assert_good_videos_through(video_import)


# --- SignStream XML (`corpus.source: asllrp`) ---


def ss3(*segments: str, version: str = "3") -> str:
    """A SignStream 3 export naming one media file (ID 1) and holding `segments`."""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><SIGNSTREAM-DATABASE SIGNSTREAM-VERSION="{version}">'
        '<MEDIA-FILES><MEDIA-FILE ID="1" FILENAME="clip.mp4"/></MEDIA-FILES>'
        f"<SEGMENTS>{''.join(segments)}</SEGMENTS></SIGNSTREAM-DATABASE>"
    )


def segment(s: int, e: int, glosses: str, media: str = "1") -> str:
    signs = "".join(f'<A S="{100 * k}" E="{100 * k + 90}">{g}</A>' for k, g in enumerate(glosses.split()))
    track = f'<TRACK NAME="main gloss" FID="7">{signs}</TRACK>'
    return f'<SEGMENT S="{s}" E="{e}"><MEDIA-REF ID="{media}"/>{track}</SEGMENT>'


BOMB = (
    '<?xml version="1.0"?><!DOCTYPE SIGNSTREAM-DATABASE [<!ENTITY a "aaaaaaaaaa">'
    + "".join(f'<!ENTITY {b} "{("&" + a + ";") * 10}">' for a, b in zip("abcdefgh", "bcdefghi"))
    + ']><SIGNSTREAM-DATABASE SIGNSTREAM-VERSION="3"><SEGMENTS>&i;</SEGMENTS></SIGNSTREAM-DATABASE>'
)  # ten levels of ten: 10^9 characters once expanded (the "billion laughs")


@pytest.fixture(scope="module")
def xml_import(tmp_path_factory):
    """A folder of SignStream exports, good and bad, and the one media file they name."""
    tmp = tmp_path_factory.mktemp("asllrp")
    xml, media = tmp / "xml", tmp / "media"
    xml.mkdir()
    media.mkdir()
    make_video(media / "clip.mp4", 20)  # 2 s at 10 fps
    good = ss3(segment(0, 1000, "IX-1p LIKE"))
    files = {
        "good": good,
        "utterances": ss3(segment(500, 1500, "LIKE"), segment(900, 100, "IX-1p"), segment(0, 900, "LIKE", media="9")),
        "malformed": good[:-30],
        "bomb": BOMB,
        "other_root": '<?xml version="1.0"?><ANNOTATION_DOCUMENT><HEADER/></ANNOTATION_DOCUMENT>',
        "version4": ss3(segment(0, 1000, "IX-1p LIKE"), version="4"),
    }
    for name, text in files.items():
        (xml / f"{name}.xml").write_text(text, encoding="utf-8")
    (xml / "session.xml").mkdir()  # a folder whose name ends in .xml
    (xml / "moved.xml").symlink_to(tmp / "elsewhere/moved.xml")  # a link to an export since moved away
    manifest, skipped, summary = import_corpus("asllrp", {"xml_dir": str(xml), "media_dir": str(media)}, tmp / "corpus")
    return manifest, skipped, summary, tmp


def assert_good_xml_imported(xml_import) -> None:
    manifest, _, _, tmp = xml_import
    assert sorted(manifest.index) == ["good-1", "utterances-1"]
    assert manifest.loc["good-1", "glosses"] == "IX-1p LIKE" and manifest.loc["utterances-1", "n_frames"] == 10
    assert_good_imported(manifest, tmp / "corpus", ("good-1", "utterances-1"))
    assert_nothing_partial(tmp / "corpus")


@pytest.mark.bad_input(
    case="malformed XML",
    sees="`<file>` in `skipped.csv`: `unreadable XML: <file>: not well-formed XML (unclosed token: line 1, column "
    "...)`",
    kept="every other export imported",
)
def test_malformed_xml_is_skipped_naming_the_file(xml_import):
    _, skipped, _, tmp = xml_import
    path = tmp / "xml/malformed.xml"
    assert skipped[str(path)].startswith(f"unreadable XML: {path}: not well-formed XML (unclosed token: line 1,")
    assert_good_xml_imported(xml_import)


@pytest.mark.bad_input(
    case='XML that declares entities (an entity-expansion bomb, the "billion laughs")',
    sees="`<file>` in `skipped.csv`: `unreadable XML: <file>: the XML declares entities (entity 'a'); SignStream "
    "exports never do`",
    kept="every other export imported; nothing expanded (the declaration is refused before the tree is built)",
)
def test_an_xml_entity_bomb_is_refused_before_expansion(xml_import):
    _, skipped, _, tmp = xml_import
    path = tmp / "xml/bomb.xml"
    said = "the XML declares entities (entity 'a'); SignStream exports never do"
    assert skipped[str(path)] == f"unreadable XML: {path}: {said}"
    assert_good_xml_imported(xml_import)


@pytest.mark.bad_input(
    case="XML that is not a SignStream export (another root element)",
    sees="`<file>` in `skipped.csv`: `unreadable XML: <file>: root element <ANNOTATION_DOCUMENT> is not a SignStream "
    "export (expected <SIGNSTREAM-DATABASE>)`",
    kept="every other export imported",
)
def test_xml_of_another_root_is_skipped(xml_import):
    _, skipped, _, tmp = xml_import
    path = tmp / "xml/other_root.xml"
    said = "root element <ANNOTATION_DOCUMENT> is not a SignStream export (expected <SIGNSTREAM-DATABASE>)"
    assert skipped[str(path)] == f"unreadable XML: {path}: {said}"
    assert_good_xml_imported(xml_import)


@pytest.mark.bad_input(
    case="SignStream export of an unknown version",
    sees="`<file>` in `skipped.csv`: `unreadable XML: <file>: SIGNSTREAM-VERSION='4' is not a supported SignStream "
    "version (2 or 3)`",
    kept="every other export imported",
)
def test_a_signstream_export_of_an_unknown_version_is_skipped(xml_import):
    _, skipped, _, tmp = xml_import
    path = tmp / "xml/version4.xml"
    said = "SIGNSTREAM-VERSION='4' is not a supported SignStream version (2 or 3)"
    assert skipped[str(path)] == f"unreadable XML: {path}: {said}"
    assert_good_xml_imported(xml_import)


@pytest.mark.bad_input(
    case="SignStream utterance that ends before it starts, or names a media file the export does not list",
    sees="`utterances-2` in `skipped.csv`: `unreadable XML element: end E=100 ms is not after start S=900 ms` "
    "(`utterances-3`: `... unknown media reference ID '9' (no such MEDIA-FILE)`)",
    kept="the rest of the same export, and every other export, imported",
)
def test_bad_signstream_utterances_are_skipped_and_the_rest_of_the_file_read(xml_import):
    _, skipped, summary, _ = xml_import
    assert skipped["utterances-2"] == "unreadable XML element: end E=100 ms is not after start S=900 ms"
    assert skipped["utterances-3"] == "unreadable XML element: unknown media reference ID '9' (no such MEDIA-FILE)"
    assert summary["skipped_by_reason"] == {"unreadable XML": 5, "unreadable XML element": 2}
    assert_good_xml_imported(xml_import)


@pytest.mark.bad_input(
    case="folder named `*.xml` among the SignStream exports",
    sees="nothing: the folder is searched for exports like any other folder, not read as one",
    kept="every export imported",
)
def test_a_folder_named_xml_is_searched_not_read(xml_import):
    _, skipped, _, tmp = xml_import
    assert str(tmp / "xml/session.xml") not in skipped
    assert_good_xml_imported(xml_import)


@pytest.mark.bad_input(
    case="`*.xml` that cannot be read (a link to an export since moved away)",
    sees="`<file>` in `skipped.csv`: `unreadable XML: [Errno 2] No such file or directory: '<file>'`",
    kept="every other export imported",
)
def test_an_xml_file_that_cannot_be_read_is_skipped(xml_import):
    _, skipped, _, tmp = xml_import
    path = tmp / "xml/moved.xml"
    assert skipped[str(path)] == f"unreadable XML: [Errno 2] No such file or directory: '{path}'"
    assert_good_xml_imported(xml_import)


# --- `prepare` on the command line ---


@pytest.mark.bad_input(
    case="malformed JSON (WLASL)",
    sees="`python -m pipeline.prepare` exits 1 with one line: `prepare: corpus.wlasl.json_path: <json> is not "
    "valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))`",
    kept="the previous corpus, untouched; no metrics written",
)
def test_malformed_json_stops_the_prepare_command(tmp_path):
    import subprocess
    import sys

    import yaml

    (tmp_path / "WLASL_v0.3.json").write_text("{not json")
    params = {"seed": 0, "corpus": {"source": "wlasl", "wlasl": {"json_path": str(tmp_path / "WLASL_v0.3.json")}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    args = ["--params", "params.yaml", "--out", "corpus", "--metrics", "corpus.json", "--preview", "preview.png"]
    run = subprocess.run([sys.executable, "-m", "pipeline.prepare", *args], cwd=tmp_path, capture_output=True,
                         text=True, env=_env(), timeout=120)  # fmt: skip
    said = "is not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"
    line = f"prepare: corpus.wlasl.json_path: {tmp_path / 'WLASL_v0.3.json'} {said}"
    assert run.returncode == 1 and run.stderr.strip() == line  # one line, no traceback
    assert not (tmp_path / "corpus").exists() and not (tmp_path / "corpus.json").exists()


def _env() -> dict:
    import os

    root = str(Path(__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": root, "OMP_NUM_THREADS": "1"}


# --- `recognize`: inputs, and models that do not fit ---

PARAMS = {"seed": 0, "temperature": 0.7, "decoding": {"beam_size": 2, "batch_size": 8, "max_len": 5,
          "ctc_weight": {"pose2gloss": 0.5, "video2gloss": 0.5}}}  # fmt: skip


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny Stage I and a Video2Pose trained against it, published as `train_*` publish them (untrained weights:
    what is tested is which inputs and models `recognize` takes, not its glosses), and a params file."""
    import torch
    import yaml

    from pipeline.checkpoints import model_paths, save_model
    from pipeline.hashing import sha256_files
    from pipeline.nets.pose2gloss import Pose2Gloss, Pose2GlossConfig
    from pipeline.nets.video2pose import Video2Pose, Video2PoseConfig

    tmp = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    glosses = ["IX-1p", "LIKE", "BOOK"]
    p2g = Pose2Gloss(Pose2GlossConfig(vocab_size=4 + len(glosses), d_track=8, unified_dim=16, unet_channels=(8,),
                                      d_model=16, n_decoder_layers=1, n_decoder_heads=2, n_fusion_heads=2, max_len=6,
                                      inference_steps=2))  # fmt: skip
    p2g.data_options = {"frame_stride": 1, "max_frames": 64}
    p2g.input_spec = {"vocab": glosses, "norm_mean": [0.0] * 1959, "norm_std": [1.0] * 1959}
    save_model(tmp / "pose2gloss/best", p2g.state_dict(), p2g.published_config())
    v2p = Video2Pose(Video2PoseConfig(img_size=32, patch_size=16, vit_dim=16, vit_heads=2, d_temporal=16,
                                      temporal_layers=1, temporal_heads=2, token_dim=4))  # fmt: skip
    v2p.frame_options = {"size": 32, "stride": 1, "max_frames": 64}
    v2p.teacher_sha256 = sha256_files([model_paths(tmp / "pose2gloss/best")[0]])
    save_model(tmp / "video2pose/best", v2p.state_dict(), v2p.published_config())
    (tmp / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    return tmp


def recognize_cli(
    models: Path, *args: str, pose2gloss: Path | None = None, video2pose: Path | None = None, as_json: bool = True
) -> tuple[int | str | None, list]:
    """`python -m pipeline.recognize ARGS [--json]` run in this process: (exit code or message, stdout lines, parsed
    when `as_json`)."""
    import contextlib
    import io

    from pipeline.recognize import main

    out = io.StringIO()
    argv = [*args, *(["--json"] if as_json else []), "--params", str(models / "params.yaml"),
            "--pose2gloss", str(pose2gloss or models / "pose2gloss/best"),
            "--video2pose", str(video2pose or models / "video2pose/best")]  # fmt: skip
    code = 0
    with contextlib.redirect_stdout(out):
        try:
            main(argv)
        except SystemExit as exit_:
            code = exit_.code
    lines = out.getvalue().splitlines()
    return code, [json.loads(line) for line in lines] if as_json else lines


@pytest.fixture(scope="module")
def recognized(models, tmp_path_factory):
    """`recognize` over good inputs and every kind of bad one, with `--json` and without: ({input name: its JSON
    line}, exit code, the inputs' folder, {input name: its plain line})."""
    tmp = tmp_path_factory.mktemp("inputs")
    good_pose = mediapipe_pose(tmp / "good.pose")
    edited_pose(good_pose, tmp / "nan.pose", nan_points)
    make_video(tmp / "good.mp4", 6)
    edited_pose(good_pose, tmp / "zero_frames.pose", lambda h, d, c: (h, d[:0], c[:0], 25.0))
    (tmp / "notes.txt").write_text("hello")
    (tmp / "empty.mp4").write_bytes(b"")
    names = ["good.pose", "nan.pose", "good.mp4", "zero_frames.pose", "notes.txt", "empty.mp4", "gone.pose"]
    code, lines = recognize_cli(models, *(str(tmp / n) for n in names))
    assert [line["input"] for line in lines] == [str(tmp / n) for n in names]  # one line per input, in order
    plain_code, plain = recognize_cli(models, *(str(tmp / n) for n in names), as_json=False)
    assert plain_code == code and [line.split("\t")[0] for line in plain] == [str(tmp / n) for n in names]
    return {n: line for n, line in zip(names, lines)}, code, tmp, dict(zip(names, plain))


def assert_good_inputs_recognised(recognized) -> None:
    lines, code, _, _ = recognized
    assert code == 1  # some input failed
    assert lines["good.pose"]["tracks"] == ["mediapipe"] and lines["good.pose"]["frames"] == 6
    assert lines["good.mp4"]["tracks"] == ["video2pose"] and lines["good.mp4"]["frames"] == 6
    for name in ("good.pose", "good.mp4"):
        assert "error" not in lines[name] and len(lines[name]["hypotheses"]) == 1


AND_EXIT_1 = ' (`--json`: `{"input": ..., "error": ...}`); exit status 1'  # what each failed input's line adds


@pytest.mark.bad_input(
    case="input to `recognize` that is neither a video nor a `.pose` file",
    sees=f"its own line, `<input><TAB>error: <input>: not a video (.mp4, .mov, ...) nor a .pose file`{AND_EXIT_1}",
    kept="every other input recognised, each on its own line",
)
def test_recognize_reports_an_input_of_another_type_on_its_line(recognized):
    lines, _, tmp, plain = recognized
    kinds = ".mp4, .mov, .avi, .mkv, .webm, .m4v, .mpg, .mpeg, .wmv, .flv"
    said = f"{tmp / 'notes.txt'}: not a video ({kinds}) nor a .pose file"
    assert lines["notes.txt"] == {"input": str(tmp / "notes.txt"), "error": said}
    assert plain["notes.txt"] == f"{tmp / 'notes.txt'}\terror: {said}"
    assert_good_inputs_recognised(recognized)


@pytest.mark.bad_input(
    case="input to `recognize` that does not exist",
    sees=f"its own line, `<input><TAB>error: <input>: no such file`{AND_EXIT_1}",
    kept="every other input recognised",
)
def test_recognize_reports_a_missing_input_on_its_line(recognized):
    lines, _, tmp, plain = recognized
    assert lines["gone.pose"]["error"] == f"{tmp / 'gone.pose'}: no such file"
    assert plain["gone.pose"] == f"{tmp / 'gone.pose'}\terror: {tmp / 'gone.pose'}: no such file"
    assert_good_inputs_recognised(recognized)


@pytest.mark.bad_input(
    case="unreadable video given to `recognize` (zero bytes)",
    sees=f"its own line, `<input><TAB>error: <input>: cannot open video (corrupt or unsupported)`{AND_EXIT_1}",
    kept="every other input recognised, the other videos through Video2Pose",
)
def test_recognize_reports_an_unreadable_video_on_its_line(recognized):
    lines, _, tmp, plain = recognized
    said = f"{tmp / 'empty.mp4'}: cannot open video (corrupt or unsupported)"
    assert lines["empty.mp4"]["error"] == said and plain["empty.mp4"] == f"{tmp / 'empty.mp4'}\terror: {said}"
    assert_good_inputs_recognised(recognized)


@pytest.mark.bad_input(
    case="`.pose` file of zero frames given to `recognize`",
    sees=f"its own line, `<input><TAB>error: <input>: the file has 0 frames`{AND_EXIT_1}",
    kept="every other input recognised",
)
def test_recognize_reports_a_pose_file_of_zero_frames_on_its_line(recognized):
    lines, _, tmp, plain = recognized
    said = f"{tmp / 'zero_frames.pose'}: the file has 0 frames"
    assert lines["zero_frames.pose"]["error"] == said
    assert plain["zero_frames.pose"] == f"{tmp / 'zero_frames.pose'}\terror: {said}"
    assert_good_inputs_recognised(recognized)


@pytest.mark.bad_input(
    case="`.pose` file with NaN / infinite points given to `recognize`",
    sees="nothing: recognised; the NaN points are read as not found, its all-NaN frame as undetected",
    kept="the input's hypotheses, from its finite points",
)
def test_recognize_reads_nan_points_as_not_found(recognized):
    lines, _, _, _ = recognized
    nan = lines["nan.pose"]
    assert "error" not in nan and nan["tracks"] == ["mediapipe"] and nan["frames"] == 6
    assert len(nan["hypotheses"]) == 1 and np.isfinite(nan["hypotheses"][0]["score"])
    assert_good_inputs_recognised(recognized)


def copy_model(src: Path, dst: Path, edit=None) -> Path:
    """A published model copied to `dst` (both files), its JSON changed by `edit(config)` when given."""
    import shutil

    dst.parent.mkdir(parents=True, exist_ok=True)
    for suffix in (".safetensors", ".json"):
        shutil.copy(src.with_suffix(suffix), dst.with_suffix(suffix))
    if edit is not None:
        config = json.loads(dst.with_suffix(".json").read_text())
        edit(config)
        dst.with_suffix(".json").write_text(json.dumps(config))
    return dst


@pytest.mark.bad_input(
    case="Video2Pose model given as the Stage I model (`--pose2gloss`): a checkpoint of the other stage",
    sees="`python -m pipeline.recognize` exits 1 with one line: `recognize: <model>: not a Stage I (Pose2Gloss) "
    "model (TypeError: Pose2GlossConfig.__init__() got an unexpected keyword argument 'backbone')`",
    kept="nothing read: no input is opened before the models are checked",
)
def test_a_stage_two_model_as_stage_one_is_one_line_from_the_command(models, tmp_path):
    import subprocess
    import sys

    (tmp_path / "a.pose").write_bytes(b"never read")
    v2p = models / "video2pose/best"
    args = [str(tmp_path / "a.pose"), "--pose2gloss", str(v2p), "--params", str(models / "params.yaml")]
    run = subprocess.run([sys.executable, "-m", "pipeline.recognize", *args], capture_output=True, text=True,
                         env=_env(), cwd=tmp_path, timeout=300)  # fmt: skip
    said = "not a Stage I (Pose2Gloss) model (TypeError: Pose2GlossConfig.__init__() got an unexpected keyword"
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr.strip() == f"recognize: {v2p}: {said} argument 'backbone')"  # one line, no traceback


@pytest.mark.bad_input(
    case="Stage I model given as Video2Pose (`--video2pose`): a checkpoint of the other stage",
    sees="`recognize: <model>: not a Stage II (Video2Pose) model (TypeError: Video2PoseConfig.__init__() got an "
    "unexpected keyword argument 'd_model'); --extract reads videos without it` (exit 1)",
    kept="no output line: the models are checked before any video is decoded",
)
def test_a_stage_one_model_as_video2pose_is_refused(models, recognized):
    _, _, inputs, _ = recognized
    p2g = models / "pose2gloss/best"
    code, lines = recognize_cli(models, str(inputs / "good.mp4"), video2pose=p2g)
    assert lines == []  # no input read
    said = "not a Stage II (Video2Pose) model (TypeError: Video2PoseConfig.__init__() got an unexpected keyword"
    assert code == f"recognize: {p2g}: {said} argument 'd_model'); --extract reads videos without it"


@pytest.mark.bad_input(
    case="Video2Pose trained against another Stage I than the one given",
    sees="``recognize: <video2pose> was trained against another Stage I than <pose2gloss>: use the pair `dvc repro` "
    "published together`` (exit 1)",
    kept="no output line: the pair is checked before any video is read",
)
def test_a_video2pose_of_another_stage_one_is_refused(models, recognized, tmp_path):
    _, _, inputs, _ = recognized
    other = copy_model(models / "video2pose/best", tmp_path / "other", lambda c: c.update(teacher_sha256="0" * 64))
    code, lines = recognize_cli(models, str(inputs / "good.mp4"), video2pose=other)
    assert lines == []  # no input read
    p2g = models / "pose2gloss/best"
    assert code == f"recognize: {other} was trained against another Stage I than {p2g}: use the pair " \
                               "`dvc repro` published together"  # fmt: skip


@pytest.mark.bad_input(
    case="Stage I model whose vocabulary is not the one its weights were trained for (another corpus' list)",
    sees="`recognize: <model>: its vocabulary lists 2 glosses and its weights score 3: its .json and .safetensors "
    "are not one model` (exit 1)",
    kept="nothing read: no input is opened",
)
def test_a_stage_one_model_of_another_vocabulary_is_refused(models, recognized, tmp_path):
    _, _, inputs, _ = recognized
    other = copy_model(models / "pose2gloss/best", tmp_path / "other",
                       lambda c: c["input_spec"].update(vocab=["IX-1p", "LIKE"]))  # fmt: skip
    code, lines = recognize_cli(models, str(inputs / "good.pose"), pose2gloss=other)
    assert lines == []  # no input read
    said = "its vocabulary lists 2 glosses and its weights score 3: its .json and .safetensors are not one model"
    assert code == f"recognize: {other}: {said}"


@pytest.mark.bad_input(
    case="truncated model weights (`best.safetensors` cut short)",
    sees="`recognize: <model>: not a readable safetensors model (...)` (exit 1)",
    kept="nothing read; the file is never executed",
)
def test_truncated_weights_are_refused(models, recognized, tmp_path):
    _, _, inputs, _ = recognized
    cut = copy_model(models / "pose2gloss/best", tmp_path / "cut")
    weights = cut.with_suffix(".safetensors")
    weights.write_bytes(weights.read_bytes()[:200])
    code, lines = recognize_cli(models, str(inputs / "good.pose"), pose2gloss=cut)
    assert lines == []  # no input read
    start = f"recognize: {cut}: not a readable safetensors model ("
    assert str(code).startswith(start) and "\n" not in str(code)


@pytest.mark.bad_input(
    case="published model missing one of its two files (the `.json` beside the `.safetensors`)",
    sees="`recognize: <model>: not a Stage I model signx can load (FileNotFoundError: no published model at <model>: "
    "missing ['<model>.json'])` (exit 1)",
    kept="nothing read",
)
def test_a_model_missing_its_json_is_refused(models, recognized, tmp_path):
    _, _, inputs, _ = recognized
    half = copy_model(models / "pose2gloss/best", tmp_path / "half")
    half.with_suffix(".json").unlink()
    code, lines = recognize_cli(models, str(inputs / "good.pose"), pose2gloss=half)
    assert lines == []  # no input read
    said = f"no published model at {half}: missing ['{half}.json']"
    assert code == f"recognize: {half}: not a Stage I model signx can load (FileNotFoundError: {said})"


# --- `evaluate`'s models ---


def _stage_one_with_vocabulary(models: Path, glosses: list[str], out: Path, retrained: bool = False) -> Path:
    """The fixture's Stage I republished with another vocabulary in its config (`retrained`: other weights)."""
    from pipeline.checkpoints import load_model, save_model

    state, config = load_model(models / "pose2gloss/best")
    config["input_spec"] = dict(config["input_spec"], vocab=glosses)
    if retrained:
        name = next(iter(state))
        state[name] = state[name] + 1e-3
    save_model(out / "best", state, config)
    return out / "best"


def _evaluate(models: Path, tmp_path: Path, model: str, **paths: Path) -> str:
    """`python -m pipeline.evaluate <model>` (in process) on a corpus of the fixture's vocabulary; the line it
    exits with."""
    from pipeline import evaluate
    from pipeline.vocab import Vocab

    corpus = tmp_path / "corpus"
    corpus.mkdir(exist_ok=True)
    Vocab(("IX-1p", "LIKE", "BOOK")).save(corpus / "vocab.json")
    args = [model, "--params", str(models / "params.yaml"), "--corpus", str(corpus), "--metrics-dir",
            str(tmp_path / "metrics")] + [a for k, v in paths.items() for a in (f"--{k.replace('_', '-')}", str(v))]
    with pytest.raises(SystemExit) as ended:
        evaluate.main(args)
    assert not (tmp_path / "metrics").exists()  # nothing written
    return str(ended.value)


@pytest.mark.bad_input(
    case="Stage I evaluated on a corpus of another vocabulary",
    sees="`evaluate pose2gloss: <model>: trained on another vocabulary (3 glosses) than <corpus>/vocab.json (3 "
    "glosses): evaluate it on the corpus it was trained on, or retrain it` (it used to score its ids as the corpus' "
    "glosses, or stop with an IndexError)",
    kept="nothing written; the previous metrics untouched",
)
def test_evaluate_refuses_a_stage_one_of_another_vocabulary(models, tmp_path):
    other = _stage_one_with_vocabulary(models, ["BOOK", "CAT", "DOG"], tmp_path / "other")
    said = _evaluate(models, tmp_path, "pose2gloss", pose2gloss=other)
    assert said == (f"evaluate pose2gloss: {other}: trained on another vocabulary (3 glosses) than "
                    f"{tmp_path / 'corpus/vocab.json'} (3 glosses): evaluate it on the corpus it was trained on, or "
                    "retrain it")  # fmt: skip


@pytest.mark.bad_input(
    case="Video2Pose evaluated with another Stage I than its own",
    sees="`evaluate video2gloss: <video2pose> was trained against another Stage I than <pose2gloss>: use the pair "
    "`dvc repro` published together`",
    kept="nothing written; the previous metrics untouched",
)
def test_evaluate_refuses_a_video2pose_with_another_stage_one(models, tmp_path):
    other = _stage_one_with_vocabulary(models, ["IX-1p", "LIKE", "BOOK"], tmp_path / "other", retrained=True)
    said = _evaluate(models, tmp_path, "video2gloss", video2pose=models / "video2pose/best", pose2gloss=other)
    assert said == (f"evaluate video2gloss: {models / 'video2pose/best'} was trained against another Stage I than "
                    f"{other}: use the pair `dvc repro` published together")  # fmt: skip


@pytest.mark.bad_input(
    case="Video2Pose given to `evaluate` as Stage I",
    sees="`evaluate pose2gloss: <model>: not a Stage I (Pose2Gloss) model (TypeError: ... unexpected keyword "
    "argument ...)`",
    kept="nothing written; the previous metrics untouched",
)
def test_evaluate_refuses_a_video2pose_as_stage_one(models, tmp_path):
    said = _evaluate(models, tmp_path, "pose2gloss", pose2gloss=models / "video2pose/best")
    assert said.startswith(f"evaluate pose2gloss: {models / 'video2pose/best'}: not a Stage I (Pose2Gloss) model "
                           "(TypeError: ") and "unexpected keyword argument" in said and "\n" not in said  # fmt: skip
