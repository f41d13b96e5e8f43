"""`check_params`: every user mistake in params.yaml is one line naming the param, before any stage runs."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.check_params import ParamsError, check_params, write_checked

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = yaml.safe_load((ROOT / "params.yaml").read_text())


def _with(path: str, value: object) -> dict:
    """The default params with `path` (dotted; "" for the top level) set to `value`."""
    params = copy.deepcopy(DEFAULT)
    *parents, key = path.split(".")
    section = params
    for p in parents:
        section = section[p]
    section[key] = value
    return params


MISTAKES = [  # (param, value, what the one-line message must say)
    ("corpus.synthetic.n_glosses", "abc", r"^corpus\.synthetic\.n_glosses: expected a whole number, got 'abc'$"),
    ("corpus.n_glosses", 50, r"n_glosses belongs to source 'synthetic': set corpus\.synthetic\.n_glosses"),
    ("corpus.synthetic.n_signers", -2, r"^corpus\.synthetic\.n_signers: must be >= 0, got -2$"),
    ("corpus.source", "phoenix", r"^corpus\.source: unknown source 'phoenix'; sources: asllrp, csv, pose, synthetic"),
    ("corpus.test_fraction", 0.95, r"val_fraction and test_fraction must be non-negative and sum to less than 1"),
    ("pose2gloss.learning_rate", 1e-3, r"^pose2gloss\.learning_rate: unknown param; valid keys: aug_noise, .*\blr\b"),
    ("pose2gloss.lr", "fast", r"^pose2gloss\.lr: expected a number, got 'fast'$"),
    ("pose2gloss.lr", -0.1, r"^pose2gloss\.lr: must be > 0, got -0\.1$"),
    ("pose2gloss.epochs", 2.5, r"^pose2gloss\.epochs: expected a whole number, got 2\.5$"),
    ("pose2gloss.dropout", 1.0, r"^pose2gloss\.dropout: must be in \[0, 1\), got 1\.0$"),
    ("pose2gloss.teacher_forcing", [0.5], r"^pose2gloss\.teacher_forcing: expected a list of 2 values, got 1"),
    ("pose2gloss.losses", {"text": "yes"}, r"^pose2gloss\.losses\.text: expected true or false, got 'yes'$"),
    ("pose2gloss.weights", {"txt": 1.0}, r"pose2gloss\.weights: unknown losses \['txt'\]"),
    ("pose2gloss.tracks", ["dwpose", "openpose"], r"^pose2gloss\.tracks: unknown tracks \['openpose'\]"),
    ("pose2gloss.d_model", 190, r"^pose2gloss\.d_model must be a multiple of pose2gloss\.n_decoder_heads$"),
    ("pose2gloss.memory_positions", "rotary", r"^pose2gloss\.memory_positions: must be one of sinusoidal, learned"),
    ("video2pose.img_size", 7, r"^video2pose\.img_size \(7\) must be a multiple of video2pose\.patch_size \(16\)"),
    ("video2pose.patch_size", 12, r"video2pose\.stem_patch \(4\) times a power of two"),
    ("decoding.beam_size", 0, r"^decoding\.beam_size: must be >= 1, got 0$"),
    ("decoding.strategy", "viterbi", r"^decoding\.strategy: must be one of beam, greedy, sample, ctc; got 'viterbi'$"),
    ("decoding.ctc_weight", {"pose2gloss": 1.5, "video2gloss": 0.5}, r"^decoding\.ctc_weight\.pose2gloss: must be in"),
    ("decoding.max_len", 100, r"^decoding\.max_len must be at most pose2gloss\.max_len \(64\)"),
    ("temperature", 0, r"^temperature: must be > 0, got 0$"),
    ("temprature", 0.5, r"^temprature: unknown param \(did you mean temperature\?\); valid keys: corpus, decoding"),
    ("seed", "x", r"^seed: expected a whole number, got 'x'$"),
    ("dwpose.backend", "openpose", r"^dwpose\.backend: unknown backend 'openpose'; dwpose backends: auto, none, onnx"),
    ("dwpose.options", {"det_score": 3}, r"^dwpose\.options\.det_score: must be in \[0, 1\], got 3$"),
    ("dwpose.options", {"detectr": "x.onnx"}, r"^dwpose\.options\.detectr: unknown param \(did you mean detector\?\)"),
    ("sapiens.enabled", "no", r"^sapiens\.enabled: expected true or false, got 'no'$"),
]


@pytest.mark.parametrize(("param", "value", "says"), MISTAKES, ids=[f"{p}={v!r}" for p, v, _ in MISTAKES])
def test_each_mistake_is_one_line_naming_the_param(param, value, says):
    with pytest.raises(ParamsError, match=says) as err:
        check_params(_with(param, value))
    assert "\n" not in str(err.value)


def test_every_track_disabled_is_refused():
    params = copy.deepcopy(DEFAULT)
    for track in ("smplerx", "dwpose", "mediapipe", "primedepth", "sapiens"):
        params[track]["enabled"] = False
    with pytest.raises(ParamsError, match="every track is disabled"):
        check_params(params)


def test_valid_changes_pass_and_leave_the_output_unchanged(tmp_path):
    """The output's bytes do not depend on the params: a valid change reruns only the stages that read it."""
    write_checked(DEFAULT, tmp_path / "a")
    for param, value in [("temperature", 0.3), ("pose2gloss.lr", 3e-4), ("pose2gloss.tracks", ["dwpose"]),
                         ("video2pose.backbone", "vit_base_patch16_224"), ("decoding.strategy", "greedy"),
                         ("corpus.source", "wlasl"), ("mediapipe.options", {"model_complexity": 2})]:  # fmt: skip
        write_checked(_with(param, value), tmp_path / "b")
        assert (tmp_path / "b").read_bytes() == (tmp_path / "a").read_bytes()


def test_the_command_prints_one_line_and_writes_nothing_on_a_mistake(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(_with("corpus.synthetic.n_glosses", "abc")))
    out = tmp_path / "checked"
    run = subprocess.run([sys.executable, "-m", "pipeline.check_params", "--params", str(bad), "--out", str(out)],
                         cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip() == f"{bad}: corpus.synthetic.n_glosses: expected a whole number, got 'abc'"
    assert not out.exists()
    bad.write_text("pose2gloss: [1, 2\n")  # not YAML
    run = subprocess.run([sys.executable, "-m", "pipeline.check_params", "--params", str(bad), "--out", str(out)],
                         cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 1 and "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1


@pytest.mark.bad_input(
    case="a param of the wrong type (`corpus.synthetic.n_glosses: abc`)",
    sees="`params.yaml: corpus.synthetic.n_glosses: expected a whole number, got 'abc'` (`dvc repro` stops at "
    "`check_params`)",
    kept="every output: DVC stops before any stage that would delete one",
)
def test_a_param_of_the_wrong_type():
    with pytest.raises(ParamsError, match=r"^corpus\.synthetic\.n_glosses: expected a whole number, got 'abc'$"):
        check_params(_with("corpus.synthetic.n_glosses", "abc"))


@pytest.mark.bad_input(
    case="a param out of range (`pose2gloss.lr: -0.1`, `decoding.beam_size: 0`)",
    sees="`params.yaml: pose2gloss.lr: must be > 0, got -0.1` (`dvc repro` stops at `check_params`)",
    kept="every output",
)
def test_a_param_out_of_range():
    with pytest.raises(ParamsError, match=r"^pose2gloss\.lr: must be > 0, got -0\.1$"):
        check_params(_with("pose2gloss.lr", -0.1))
    with pytest.raises(ParamsError, match=r"^decoding\.beam_size: must be >= 1, got 0$"):
        check_params(_with("decoding.beam_size", 0))


@pytest.mark.bad_input(
    case="an unknown param (a misspelt key)",
    sees="`params.yaml: temprature: unknown param (did you mean temperature?); valid keys: corpus, decoding, ...`",
    kept="every output",
)
def test_an_unknown_param_names_the_valid_ones():
    with pytest.raises(ParamsError, match=r"^temprature: unknown param \(did you mean temperature\?\); valid keys: "):
        check_params(_with("temprature", 0.5))


@pytest.mark.bad_input(
    case="params that contradict each other (`video2pose.img_size: 7` with `patch_size: 16`)",
    sees="`params.yaml: video2pose.img_size (7) must be a multiple of video2pose.patch_size (16): each frame is cut "
    "into whole patches` (it used to train on zero patches without a word)",
    kept="every output",
)
def test_params_that_contradict_each_other():
    with pytest.raises(ParamsError, match=r"^video2pose\.img_size \(7\) must be a multiple of video2pose\.patch_size"):
        check_params(_with("video2pose.img_size", 7))
