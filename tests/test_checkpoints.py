"""Published models are safetensors + JSON: they round-trip, and no loader ever unpickles a file it is handed."""

from __future__ import annotations

import pathlib

import pytest
import torch

from pipeline.checkpoints import ModelFileError, load_model, save_model
from pipeline.nets.pose2gloss import Pose2Gloss, Pose2GlossConfig
from pipeline.nets.video2pose import Video2Pose
from pipeline.training import TrainingRun

TINY = dict(vocab_size=12, d_track=8, unified_dim=16, unet_channels=(8,), d_model=16, n_decoder_layers=1,
            n_decoder_heads=2, n_fusion_heads=2, inference_steps=2)  # fmt: skip


class CreatesAFile:
    """A pickle payload: unpickling it creates `marker` (what a malicious `best.pt` could do, and worse)."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def _malicious(path: pathlib.Path, marker: pathlib.Path) -> pathlib.Path:
    torch.save({"model": CreatesAFile(marker), "model_config": {}}, path)
    return path


def test_the_payload_is_live_when_unpickled(tmp_path):
    """The fixture is real: plain unpickling does create the file (so the refusals below mean something)."""
    marker = tmp_path / "pwned"
    with open(_malicious(tmp_path / "best.pt", marker), "rb") as f:
        torch.load(f, weights_only=False)
    assert marker.exists()


@pytest.mark.bad_input(
    case="pickled model file (`best.pt`, or a pickle renamed `best.safetensors`)",
    sees="`<model>.pt: signx loads published models only from <name>.safetensors + <name>.json, which cannot run "
    "code; it never unpickles a .pt file (a pickle can run any code when loaded)`; renamed: `<model>: not a readable "
    "safetensors model (...)`",
    kept="nothing: the file is never unpickled, its payload never runs (every loader: Stage I, Video2Pose, weights)",
)
@pytest.mark.parametrize("loader", [Pose2Gloss.from_checkpoint, Video2Pose.from_checkpoint, load_model])
def test_every_model_loader_refuses_a_pickle_and_runs_nothing(tmp_path, loader):
    marker = tmp_path / "pwned"
    pt = _malicious(tmp_path / "best.pt", marker)
    with pytest.raises(ModelFileError, match="never unpickles"):
        loader(pt)
    disguised = _malicious(tmp_path / "model.safetensors", marker)  # a pickle under the published name
    (tmp_path / "model.json").write_text('{"model_config": {}}')
    with pytest.raises(ModelFileError, match="not a readable safetensors model"):
        loader(disguised)
    with pytest.raises(ModelFileError, match="not a readable safetensors model"):
        loader(tmp_path / "model")
    assert not marker.exists()


@pytest.mark.bad_input(
    case="pickled training resume state (`models/.work/<stage>/last.pt` replaced by a pickle that runs code)",
    sees="`<stage>: <work>/last.pt cannot be read safely (UnpicklingError); starting afresh`",
    kept="nothing of it: the file is never unpickled (its payload never runs) and training starts afresh",
)
def test_a_pickled_last_pt_is_not_resumed_and_runs_nothing(tmp_path, capsys):
    marker = tmp_path / "pwned"
    work = tmp_path / "work"
    work.mkdir()
    _malicious(work / "last.pt", marker)
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    run = TrainingRun("t", work, tmp_path / "out", "fp", 10, 0, model=model, optimizer=opt, lr_scheduler=sched)
    said = f"t: {work / 'last.pt'} cannot be read safely (UnpicklingError); starting afresh"
    assert run.step_count == 0 and said in capsys.readouterr().out.splitlines()
    assert not marker.exists() and not (work / "last.pt").exists()


def test_a_published_model_round_trips_bitwise(tmp_path):
    torch.manual_seed(0)
    model = Pose2Gloss(Pose2GlossConfig(**TINY)).eval()
    model.data_options = {"tracks": ["dwpose"], "frame_stride": 2, "max_frames": 64}
    model.ctc_trained = False
    save_model(tmp_path / "best", model.state_dict(), model.published_config())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.json", "best.safetensors"]
    loaded = Pose2Gloss.from_checkpoint(tmp_path / "best.safetensors")
    assert loaded.cfg == model.cfg and loaded.data_options == model.data_options and not loaded.ctc_trained
    assert loaded.tracks_read() == [False, True, False, False, False]
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    state, config = load_model(tmp_path / "best.json")
    assert config["model_config"]["d_track"] == 8 and set(state) == set(model.state_dict())
    with pytest.raises(FileNotFoundError, match="no published model"):
        load_model(tmp_path / "missing")


def _commands(evil: pathlib.Path, corpus: pathlib.Path, tmp: pathlib.Path) -> dict:
    """Every command that loads a model a user names, given the pickle `evil` in that place."""
    from pipeline import evaluate, recognize, train_video2pose

    out = ["--metrics-dir", str(tmp / "metrics")]
    return {
        "evaluate pose2gloss": lambda: evaluate.main(["pose2gloss", "--pose2gloss", str(evil), *out]),
        "evaluate video2gloss": lambda: evaluate.main(["video2gloss", "--video2pose", str(evil), *out]),
        "recognize": lambda: recognize.main([str(tmp / "a.pose"), "--pose2gloss", str(evil)]),
        "train_video2pose (its frozen Stage I)": lambda: train_video2pose.main(
            ["--pose2gloss", str(evil), "--corpus", str(corpus), "--out", str(tmp / "v2p"), "--work",
             str(tmp / "work"), "--metrics", str(tmp / "m.json"), "--live", str(tmp / "live")]),
    }  # fmt: skip


@pytest.mark.parametrize("command", ["evaluate pose2gloss", "evaluate video2gloss", "recognize",
                                     "train_video2pose (its frozen Stage I)"])  # fmt: skip
def test_every_command_refuses_a_pickled_model_and_runs_nothing(small_corpus, tmp_path, command):
    """Evaluation, recognition and Stage II's frozen teacher, given a pickle whose loading would create a file: one
    line naming it, and the file is never created."""
    _, corpus, _ = small_corpus
    marker = tmp_path / "pwned"
    evil = _malicious(tmp_path / "best.pt", marker)
    (tmp_path / "a.pose").write_bytes(b"never read")
    with pytest.raises(SystemExit) as ended:
        _commands(evil, corpus, tmp_path)[command]()
    assert "never unpickles a .pt file" in str(ended.value) and "\n" not in str(ended.value)
    assert not marker.exists()
