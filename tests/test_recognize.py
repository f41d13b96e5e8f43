"""`python -m pipeline.recognize`: videos and .pose files to glosses with the trained models, agreeing with
evaluation, and one clear line for every input or model it cannot use."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from pipeline.data import load_split
from pipeline.evaluate import evaluate_video2gloss
from pipeline.export_pose import export_pose
from pipeline.nets.pose2gloss import Pose2Gloss
from pipeline.recognition import decode_config, pose2gloss_memory, recognize
from pipeline.recognize import RecognizeError, Recognizer, main, recognize_paths
from pipeline.train_pose2gloss import configs_from_params as stage1_configs
from pipeline.train_pose2gloss import train as train_stage1
from pipeline.train_video2pose import configs_from_params as stage2_configs
from pipeline.train_video2pose import train as train_stage2
from pipeline.vocab import Vocab
from tests.test_train_video2pose import TINY, TINY_STAGE1

PARAMS = {"seed": 0, "temperature": 0.7, "decoding": {"beam_size": 3, "ctc_weight": {"pose2gloss": 0.5,
          "video2gloss": 0.8}, "batch_size": 8}, "pose2gloss": {}, "video2pose": {}}  # fmt: skip


@pytest.fixture(scope="module")
def models(features, tmp_path_factory):
    """(corpus, features, tracks folder, Stage I, Stage II) trained in seconds on the small corpus."""
    from pipeline import extract

    corpus, store = features
    out = tmp_path_factory.mktemp("models")
    # with solo encoders, as the default: a one-track .pose file is read by its track's solo encoder
    m, t = stage1_configs(dict(TINY_STAGE1, aug_track_subsets=[0.5, 0.5], solo_epochs=1), seed=1)
    train_stage1(m, t, store, corpus, out / "pose2gloss")
    m2, t2 = stage2_configs(dict(TINY, epochs=1), seed=1)
    train_stage2(m2, t2, out / "pose2gloss/best", store, corpus, out / "video2pose", out / "cache")
    extract.extract_track("mediapipe", corpus, out / "tracks", seed=1, workers=1)
    return corpus, store, out / "tracks", out / "pose2gloss/best", out / "video2pose/best"


def _recognizer(models, extract: bool = False) -> Recognizer:
    corpus, store, tracks, p2g, v2p = models
    return Recognizer(PARAMS, str(p2g), str(v2p), extract)


def test_videos_get_the_hypotheses_of_evaluation(models, tmp_path):
    corpus, store, tracks, p2g, v2p = models
    dcfg = decode_config(PARAMS, "video2gloss")
    _, table = evaluate_video2gloss(v2p, p2g, corpus, dcfg, tmp_path / "cache", splits=("test",), batch_size=8)
    test = pd.read_parquet(corpus / "manifest.parquet").query("split == 'test'")
    paths = [corpus / v for v in test["video"][:4]]
    results = recognize_paths(paths, _recognizer(models), PARAMS)
    expected = dict(zip(table["utt_id"], table["hypothesis"].fillna("")))
    for row, r in zip(test.itertuples(), results):
        assert r.error is None and r.model == "video2gloss" and r.tracks == ["video2pose"]
        assert r.hypotheses[0][0] == expected[row.utt_id] and r.frames > 0


def test_pose_files_get_the_hypotheses_of_the_mediapipe_only_evaluation(models, tmp_path):
    corpus, store, tracks, p2g, v2p = models
    test = pd.read_parquet(corpus / "manifest.parquet").query("split == 'test'")
    ids = test["utt_id"].tolist()[:5]
    files = export_pose(ids, ("mediapipe",), corpus, tracks, tmp_path)
    results = recognize_paths(files, _recognizer(models), PARAMS, top_k=2)
    model = Pose2Gloss.from_checkpoint(p2g)
    vocab = Vocab.load(corpus / "vocab.json")
    data = [u for u in load_split(store, corpus, vocab, "test", tracks=("mediapipe",), **{
        k: v for k, v in model.data_options.items() if k != "tracks"}) if u.utt_id in ids]  # fmt: skip
    assert model.encoders.solo is not None
    rec = recognize(model, pose2gloss_memory(model), data, vocab, decode_config(PARAMS), 8, topk=False)
    expected = dict(zip(rec["utt_id"], rec["hypotheses"]))
    for utt, r in zip(ids, results):
        assert r.error is None and r.tracks == ["mediapipe"] and r.model == "pose2gloss"
        assert r.hypotheses[0][0] == expected[utt]
        assert len(r.hypotheses) == 2 and r.hypotheses[0][1] >= r.hypotheses[1][1]  # best first


def test_every_bad_input_gets_its_line_and_the_others_are_recognised(models, tmp_path, capsys):
    corpus, store, tracks, p2g, v2p = models
    good = export_pose([pd.read_parquet(corpus / "manifest.parquet")["utt_id"][0]], ("mediapipe",), corpus, tracks,
                       tmp_path)[0]  # fmt: skip
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
    hand_only = tmp_path / "hand.pose"
    _hand_only_pose(hand_only)
    args = [str(p) for p in (good, tmp_path / "notes.txt", tmp_path / "broken.mp4", hand_only, tmp_path / "gone.pose")]
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--json", "--pose2gloss", str(p2g), "--video2pose", str(v2p), "--params", _params(tmp_path)])
    assert exit_.value.code == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["input"] for line in lines] == args
    assert lines[0]["hypotheses"] and lines[0]["tracks"] == ["mediapipe"] and "error" not in lines[0]
    assert "not a video" in lines[1]["error"] and "nor a .pose file" in lines[1]["error"]
    assert "cannot open video" in lines[2]["error"] or "no decodable frames" in lines[2]["error"]
    assert "POSE_LANDMARKS" in lines[3]["error"]
    assert "no such file" in lines[4]["error"]


def test_a_model_that_does_not_match_stops_before_reading_inputs(models, tmp_path, capsys):
    corpus, store, tracks, p2g, v2p = models
    old = tmp_path / "old"
    for suffix in (".safetensors", ".json"):
        shutil.copy(p2g.with_suffix(suffix), old.with_suffix(suffix))
    config = json.loads(old.with_suffix(".json").read_text())
    del config["input_spec"]  # as published before the vocabulary and normalisation were kept with the model
    old.with_suffix(".json").write_text(json.dumps(config))
    with pytest.raises(SystemExit, match="recognize: .*published without its vocabulary and normalisation"):
        main([str(corpus / "x.pose"), "--pose2gloss", str(old), "--params", _params(tmp_path)])
    with pytest.raises(SystemExit, match=r"recognize: .*\.pt: signx loads published models only"):
        main([str(corpus / "x.pose"), "--pose2gloss", str(tmp_path / "model.pt"), "--params", _params(tmp_path)])
    other = tmp_path / "other"  # a Stage I other than the one Video2Pose was trained against
    for suffix in (".safetensors", ".json"):
        shutil.copy(p2g.with_suffix(suffix), other.with_suffix(suffix))
    weights = other.with_suffix(".safetensors")
    weights.write_bytes(weights.read_bytes()[:-4] + b"\x00\x00\x80\x3f")  # one weight changed
    video = corpus / pd.read_parquet(corpus / "manifest.parquet")["video"][0]
    with pytest.raises(RecognizeError, match="trained against another Stage I"):
        recognize_paths([video], Recognizer(PARAMS, str(other), str(v2p), False), PARAMS)
    assert "Traceback" not in capsys.readouterr().err


def test_extract_without_the_models_names_the_param(models, tmp_path):
    corpus, store, tracks, p2g, v2p = models
    video = corpus / pd.read_parquet(corpus / "manifest.parquet")["video"][0]
    params = {**PARAMS, "dwpose": {"backend": "auto", "options": {"detector": str(tmp_path / "yolox_l.onnx")}}}
    with pytest.raises(RecognizeError, match=r"--extract: dwpose.options.detector: .*yolox_l.onnx does not exist"):
        recognize_paths([video], Recognizer(params, str(p2g), str(v2p), True), params)
    only_mediapipe = {**PARAMS, **{t: {"backend": "none"} for t in ("smplerx", "dwpose", "primedepth", "sapiens")},
                      "mediapipe": {"backend": "holistic"}}  # fmt: skip
    (r,) = recognize_paths([video], Recognizer(only_mediapipe, str(p2g), str(v2p), True), only_mediapipe)
    assert r.error is None and r.tracks == ["mediapipe"] and r.hypotheses  # real MediaPipe on the video


def _params(tmp_path) -> str:
    import yaml

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(PARAMS))
    return str(path)


def _hand_only_pose(path) -> None:
    """A pose-format file holding one Holistic hand and nothing else (as hand-only public files do)."""
    from pose_format import Pose
    from pose_format.numpy import NumPyPoseBody
    from pose_format.pose_header import PoseHeader, PoseHeaderComponent, PoseHeaderDimensions

    points = [f"P{i}" for i in range(21)]
    header = PoseHeader(0.2, PoseHeaderDimensions(64, 64, 0),
                        [PoseHeaderComponent("RIGHT_HAND_LANDMARKS", points, [], [(255, 0, 0)], "XYZC")])  # fmt: skip
    data = np.ones((3, 1, 21, 3), np.float32)
    body = NumPyPoseBody(25.0, data, np.ones((3, 1, 21), np.float32))
    with open(path, "wb") as f:
        Pose(header, body).write(f)


def test_top_k_above_the_beam_is_refused(models, tmp_path):
    corpus, store, tracks, p2g, v2p = models
    first = pd.read_parquet(corpus / "manifest.parquet")["utt_id"][0]
    files = export_pose([first], ("mediapipe",), corpus, tracks, tmp_path)
    with pytest.raises(RecognizeError, match=r"--top-k 9: at most decoding.beam_size \(3\)"):
        recognize_paths(files, _recognizer(models), PARAMS, top_k=9)
