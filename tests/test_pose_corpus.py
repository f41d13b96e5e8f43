""".pose files in and out: `export_pose` writes what pose-format reads back, the `pose` corpus source imports a folder
of them, and `dvc repro` runs end to end on it (the MediaPipe and DWPose tracks from the files, the others masked,
Stage II not trained for want of videos)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pose_format import Pose

from pipeline import extract
from pipeline.corpus.manifest import read_manifest
from pipeline.corpus.sources import build_corpus
from pipeline.export_pose import export_pose
from pipeline.export_pose import main as export_main
from pipeline.posefile import read_pose_file
from pipeline.store import FrameStore
from tests.test_pipeline_dvc import _dvc, _set_params, _stages_run, repo  # noqa: F401  (repo: the fixture)


@pytest.fixture(scope="module")
def tracks(small_corpus, tmp_path_factory):
    """The small corpus' simulated mediapipe and dwpose tracks."""
    _, corpus, _ = small_corpus
    out = tmp_path_factory.mktemp("tracks")
    for track in ("mediapipe", "dwpose"):
        extract.extract_track(track, corpus, out, seed=1, workers=1)
    return corpus, out


def test_export_round_trip_through_pose_format(tracks, tmp_path):
    corpus, tracks_dir = tracks
    m = read_manifest(corpus)
    ids = m["utt_id"].tolist()[:4]
    written = export_pose(ids, ("mediapipe", "dwpose"), corpus, tracks_dir, tmp_path)
    assert len(written) == 8
    for utt in ids:
        row = m.set_index("utt_id").loc[utt]
        for track in ("mediapipe", "dwpose"):
            path = tmp_path / f"{utt}.{track}.pose"
            pose = Pose.read(path.read_bytes())  # pose-format's own reader
            assert pose.body.data.shape[0] == row["n_frames"] and pose.body.fps == pytest.approx(row["fps"])
            assert (pose.header.dimensions.width, pose.header.dimensions.height) == (row["width"], row["height"])
            back = read_pose_file(path)
            store = FrameStore(tracks_dir / f"{track}.zarr")
            values, mask = store.read(utt, "values"), store.read(utt, "mask").astype(bool)
            assert set(back.tracks) == {track}
            np.testing.assert_array_equal(back.tracks[track].mask, mask)
            np.testing.assert_allclose(back.tracks[track].values, values, rtol=1e-5, atol=1e-5)
            assert mask.any() and np.abs(values).max() > 0.1  # a real track, not an empty one


def test_export_command_errors_are_one_line(tracks, tmp_path, capsys):
    corpus, tracks_dir = tracks
    with pytest.raises(SystemExit, match=r"export_pose: not in the corpus manifest: \['nope'\]"):
        export_main(["nope", "--corpus", str(corpus), "--tracks", str(tracks_dir), "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"export_pose: name utterances to export, or a --split"):
        export_main(["--corpus", str(corpus), "--tracks", str(tracks_dir), "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"export_pose: no mediapipe track at .*: run `dvc repro extract@mediapipe`"):
        export_main(["--split", "test", "--corpus", str(corpus), "--tracks", str(tmp_path), "--out", str(tmp_path)])
    capsys.readouterr()
    export_main(["--split", "test", "--track", "dwpose", "--corpus", str(corpus), "--tracks", str(tracks_dir),
                 "--out", str(tmp_path)])  # fmt: skip
    n_test = int((read_manifest(corpus)["split"] == "test").sum())
    assert len(list(tmp_path.glob("*.dwpose.pose"))) == n_test and "export_pose: " in capsys.readouterr().out


def export_corpus(corpus: Path, tracks_dir: Path, dest: Path, track: str = "mediapipe") -> Path:
    """A folder of .pose files made from a corpus' track, with the gloss table the `pose` source reads."""
    m = read_manifest(corpus)
    export_pose(m["utt_id"].tolist(), (track,), corpus, tracks_dir, dest / "poses")
    table = dest / "poses.csv"
    with open(table, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["pose", "glosses", "split", "signer"])
        for r in m.itertuples():
            writer.writerow([f"{r.utt_id}.{track}.pose", r.glosses, r.split, r.signer])
    return table


def test_pose_source_imports_and_reports_bad_files(tracks, tmp_path):
    corpus, tracks_dir = tracks
    table = export_corpus(corpus, tracks_dir, tmp_path / "in")
    first = read_manifest(corpus).iloc[0]
    (tmp_path / "in/poses" / f"{first.utt_id}.mediapipe.pose").write_bytes(b"\x00\x01not a pose file")
    with open(table, "a", newline="") as f:
        csv.writer(f).writerow(["missing.pose", first.glosses, "train", "x"])
    section = {"source": "pose", "min_train_occurrences": 1,
               "pose": {"pose_dir": str(tmp_path / "in/poses"), "glosses_table": str(table)}}  # fmt: skip
    summary = build_corpus(section, seed=0, out_dir=tmp_path / "corpus")
    m = read_manifest(tmp_path / "corpus")
    assert (m["video"] == "").all() and m["pose"].str.startswith("poses/").all()
    source = read_manifest(corpus).set_index("utt_id")
    got = m.set_index("utt_id").loc[f"{source.index[1]}.mediapipe"]
    assert got["n_frames"] == source.iloc[1]["n_frames"] and got["split"] == source.iloc[1]["split"]
    assert got["fps"] == pytest.approx(source.iloc[1]["fps"]) and got["width"] == source.iloc[1]["width"]
    skipped = dict(pd.read_csv(tmp_path / "corpus/skipped.csv").values)
    assert skipped["poses.csv:2"].startswith("unreadable file") and "not a pose file" not in skipped["poses.csv:2"]
    assert skipped[f"poses.csv:{len(source) + 2}"].startswith("missing file")
    assert summary["source"] == "pose" and len(m) == len(source) - 1


@pytest.mark.slow
def test_repro_on_a_folder_of_pose_files(repo):  # noqa: F811
    _dvc("repro", "extract@mediapipe", cwd=repo)
    original = repo / "original"  # the synthetic corpus and its track, kept to compare with
    original.mkdir()
    (repo / "data/corpus").rename(original / "corpus")
    (repo / "data/tracks/mediapipe.zarr").rename(original / "mediapipe.zarr")
    export_corpus(original / "corpus", original, repo / "external/corpus")
    _set_params(repo, "corpus", source="pose")
    out = _dvc("repro", cwd=repo).stdout
    assert {"prepare", "train_pose2gloss", "train_video2pose", "evaluate@pose2gloss", "tables"} <= _stages_run(out)
    corpus = repo / "data/corpus"
    m = read_manifest(corpus)
    assert (m["video"] == "").all() and len(m) == len(read_manifest(original / "corpus"))
    mediapipe = FrameStore(repo / "data/tracks/mediapipe.zarr")
    assert mediapipe.attrs["backend"] == "posefile"
    before = FrameStore(original / "mediapipe.zarr")
    for utt in m["utt_id"][:5]:
        name = utt.removesuffix(".mediapipe")
        np.testing.assert_allclose(mediapipe.read(utt), before.read(name), rtol=1e-5, atol=1e-5)
    for track in ("smplerx", "dwpose", "primedepth", "sapiens"):
        store = FrameStore(repo / f"data/tracks/{track}.zarr")
        report = json.loads((repo / f"metrics/extract/{track}.json").read_text())
        assert not store.read_all("mask").any() and report["skipped"] == []
        assert report["backend"] == ("posefile" if track == "dwpose" else "none")  # Holistic files: no DWPose
    assert json.loads((repo / "metrics/video2pose_train.json").read_text())["trained"] is False
    assert "no videos" in json.loads((repo / "metrics/train_video2pose/NOT_TRAINED.json").read_text())["reason"]
    assert "no videos" in json.loads((repo / "metrics/video2gloss.json").read_text())["not_evaluated"]
    assert "test" in json.loads((repo / "metrics/pose2gloss.json").read_text())
    assert "Running stage" not in _dvc("repro", cwd=repo).stdout


def test_auto_backends_follow_what_the_corpus_has():
    from extractors import registry
    from extractors.runtime import BackendSetupError

    on_poses = {t: registry.resolve(t, "auto", synthetic=False, videos=False).name for t in registry.TRACK_ORDER}
    assert on_poses == {"smplerx": "none", "dwpose": "posefile", "mediapipe": "posefile", "primedepth": "none",
                        "sapiens": "none"}  # fmt: skip
    on_videos = {t: registry.resolve(t, "auto", synthetic=False).name for t in registry.TRACK_ORDER}
    assert on_videos == {"smplerx": "import", "dwpose": "onnx", "mediapipe": "holistic", "primedepth": "depth_model",
                         "sapiens": "torchscript"}  # fmt: skip
    said = r"dwpose.backend onnx reads videos, and this corpus has none .* auto or one of \['none', 'posefile'\]"
    with pytest.raises(BackendSetupError, match=said):
        registry.resolve("dwpose", "onnx", synthetic=False, videos=False)


def test_a_manifest_row_needs_a_video_or_a_pose_file(tmp_path):
    from pipeline.corpus.manifest import write_manifest
    from pipeline.vocab import Vocab

    row = {"utt_id": "u1", "video": "", "glosses": "A", "split": "train", "signer": "s", "fps": 25.0,
           "n_frames": 3, "task": "isolated"}  # fmt: skip
    with pytest.raises(ValueError, match="'u1' has neither a video nor a pose file"):
        write_manifest([row], tmp_path, Vocab(("A",)))
    with pytest.raises(FileNotFoundError, match="'u1': no pose file at"):
        write_manifest([row | {"pose": "poses/u1.pose"}], tmp_path, Vocab(("A",)))
