"""`check_params` stage: the whole params.yaml checked before any other stage runs.

    python -m pipeline.check_params [--params params.yaml]

Every stage depends on this stage's output, so DVC runs it first whenever a param changes: a mistake stops the
pipeline here with one line naming the param, before DVC has deleted any other stage's outputs (DVC removes a
stage's outputs only when it runs that stage). The output, `data/params.checked`, holds the same bytes whenever
the params are valid, so a valid change reruns only the stages that read the changed params.

What is checked: unknown keys (the valid ones listed), types (from the config dataclasses the stages build),
ranges (`RANGES`), the rules that join several fields (`_cross_field_rules`), and each section through the same
parser its stage uses (so the stage can never refuse what this stage passed).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import fnmatch
import math
import os
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path

import yaml

import extractors
from extractors import registry
from pipeline.corpus.sources import DEFAULT_SOURCE, CorpusConfig, parse_corpus_params, registered_sources
from pipeline.corpus.synthetic import TASKS
from pipeline.decoding import STRATEGIES, DecodeConfig
from pipeline.nets.pose2gloss import Pose2GlossConfig
from pipeline.nets.video2pose import Video2PoseConfig
from pipeline.params import load_params, run_cli
from pipeline.pose2gloss_config import TrainConfig
from pipeline.pose2gloss_config import configs_from_params as pose2gloss_configs
from pipeline.recognition import MODELS, decode_config
from pipeline.video2pose_config import TrainVideoConfig
from pipeline.video2pose_config import configs_from_params as video2pose_configs

OUTPUT = "data/params.checked"
TOP_LEVEL = ("seed", "temperature", "corpus", "decoding", "pose2gloss", "video2pose", *extractors.TRACK_ORDER)
TRACK_KEYS = ("backend", "options", "enabled")
# params that only the stage sets (from the data), never params.yaml
INTERNAL = {"vocab_size", "track_names", "track_dims", "extra", "seed", "pixel_mean", "pixel_std"}


class ParamsError(ValueError):
    """A param a user set wrongly; the message names it (`section.key`) and what it must be."""


def _at_least(lo: float) -> tuple[str, Callable[[float], bool]]:
    return f">= {lo}", lambda v: v >= lo


def _between(lo: float, hi: float, open_hi: bool = False) -> tuple[str, Callable[[float], bool]]:
    return (f"in [{lo}, {hi})", lambda v: lo <= v < hi) if open_hi else (f"in [{lo}, {hi}]", lambda v: lo <= v <= hi)


POSITIVE = ("> 0", lambda v: v > 0)
# dotted param names (fnmatch patterns) -> the range every number in them must lie in
RANGES: dict[str, tuple[str, Callable[[float], bool]]] = {
    "seed": _at_least(0),
    "temperature": POSITIVE,
    "*.epochs": _at_least(1),
    "*.batch_size": _at_least(1),
    "*.grad_accum": _at_least(1),
    "*.checkpoint_every": _at_least(1),
    "*.lr": POSITIVE,
    "*.weight_decay": _at_least(0),
    "*.clip": POSITIVE,
    "*.warmup_frac": _between(0, 1, open_hi=True),
    "*.min_lr_ratio": _between(0, 1),
    "*.label_smoothing": _between(0, 1, open_hi=True),
    "*.dropout": _between(0, 1, open_hi=True),
    "*.betas": _between(0, 1, open_hi=True),
    "*.teacher_forcing": _between(0, 1),
    "*.noise_weight": _at_least(0),
    "*.weights.*": _at_least(0),
    "*.aug_track_subsets": _between(0, 1),
    "*.aug_speed": POSITIVE,
    "*.aug_noise": _at_least(0),
    "*.aug_colour": _at_least(0),
    "*.aug_geometric": _between(0, 1, open_hi=True),
    "*.contrast_tau": POSITIVE,
    "*.frame_stride": _at_least(1),
    "*.max_frames": _at_least(1),
    "*.max_len": _at_least(2),
    "*.d_*": _at_least(1),
    "*_dim": _at_least(1),
    "*_heads": _at_least(1),
    "*_layers": _at_least(0),
    "*.vit_depth": _at_least(1),
    "*.unet_channels": _at_least(1),
    "*.encoder_kernel": _at_least(1),
    "*.inference_steps": _at_least(1),
    "*.num_train_timesteps": _at_least(1),
    "*.img_size": _at_least(1),
    "*.patch_size": _at_least(1),
    "*.stem_patch": _at_least(1),
    "*_workers": _at_least(0),
    "decoding.beam_size": _at_least(1),
    "decoding.top_k": _at_least(0),
    "decoding.top_p": ("in (0, 1]", lambda v: 0 < v <= 1),
    "decoding.ctc_weight*": _between(0, 1),
    "decoding.length_penalty": _at_least(0),
    "decoding.repetition_penalty": POSITIVE,
    "*.options.noise": _at_least(0),
    "*.options.batch_size": _at_least(1),
    "*.options.first_frame": _at_least(0),
    "*.options.det_score": _between(0, 1),
    "*.options.nms_iou": _between(0, 1),
    "corpus.*_fraction": _between(0, 1),
    "corpus.min_train_occurrences": _at_least(1),
    "corpus.*.n_*": _at_least(0),
    "corpus.*.width": _at_least(16),
    "corpus.*.height": _at_least(16),
    "corpus.*.fps": POSITIVE,
    "corpus.*.vocab_size": _at_least(0),
}


# dotted param names (fnmatch patterns) -> the values a string param may take
CHOICES: dict[str, tuple[str, ...]] = {
    "decoding.strategy": STRATEGIES,
    "pose2gloss.memory_positions": ("sinusoidal", "learned"),
    "video2pose.stem": ("conv", "patch"),
    "video2pose.pool": ("tokens", "avg"),
    "corpus.synthetic.task": TASKS,
}


def check_params(params: Mapping) -> None:
    """Raise `ParamsError` naming the first wrong param; return when every section is valid."""
    _refuse_unknown(params, TOP_LEVEL, "")
    _check_value("seed", params.get("seed", 0), int)
    _check_value("temperature", params.get("temperature", 0.7), float)
    _check_corpus(params.get("corpus") or {}, params.get("seed", 0))
    for track in extractors.TRACK_ORDER:
        _check_track(track, params.get(track) or {})
    _check_model("pose2gloss", params.get("pose2gloss") or {}, (Pose2GlossConfig, TrainConfig), pose2gloss_configs)
    _check_model("video2pose", params.get("video2pose") or {}, (Video2PoseConfig, TrainVideoConfig),
                 video2pose_configs)  # fmt: skip
    _check_decoding(params)
    _cross_field_rules(params)


def _refuse_unknown(section: Mapping, known: typing.Iterable[str], where: str) -> None:
    if not isinstance(section, Mapping):
        raise ParamsError(f"{where or 'params'}: expected a mapping of keys to values, got {section!r}")
    for key in section:
        if key not in known:
            close = difflib.get_close_matches(str(key), list(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ParamsError(f"{_join(where, key)}: unknown param{hint}; valid keys: {', '.join(sorted(known))}")


def _join(where: str, key: object) -> str:
    return f"{where}.{key}" if where else str(key)


def _check_value(name: str, value: object, hint: object) -> None:
    """`value` against the type `hint` of the field it sets, then against its range (`RANGES`)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        _check_fields(name, value if value is not None else {}, (hint,), set())
    elif hint is dict or origin is dict:
        if not isinstance(value, Mapping):
            raise ParamsError(f"{name}: expected a mapping, got {value!r}")
        for k, v in value.items():
            if isinstance(v, (int, float)):
                _check_range(f"{name}.{k}", v)
    elif origin is tuple:
        _check_sequence(name, value, args)
    else:
        _check_scalar(name, value, hint)


def _check_sequence(name: str, value: object, args: tuple) -> None:
    if not isinstance(value, (list, tuple)):
        raise ParamsError(f"{name}: expected a list, got {value!r}")
    if args and args[-1] is not Ellipsis and len(value) != len(args):
        raise ParamsError(f"{name}: expected a list of {len(args)} values, got {len(value)}: {list(value)}")
    if args and args[-1] is Ellipsis and not value:
        raise ParamsError(f"{name}: expected at least one value, got an empty list")
    for i, v in enumerate(value):
        _check_scalar(name, v, args[0] if args[-1] is Ellipsis else args[i], where=f"{name}[{i}]")


def _check_scalar(name: str, value: object, hint: object, where: str | None = None) -> None:
    where = where or name
    expected = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}.get(hint)
    if expected is None:
        return  # a type no param has (kept open rather than guessed)
    ok = isinstance(value, hint) and not (hint is int and isinstance(value, bool))
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok:
        raise ParamsError(f"{where}: expected {expected}, got {value!r}")
    if hint in (int, float):
        _check_range(name, value, where)
    for pattern, allowed in CHOICES.items():
        if fnmatch.fnmatchcase(name, pattern) and value not in allowed:
            raise ParamsError(f"{where}: must be one of {', '.join(allowed)}; got {value!r}")


def _check_range(name: str, value: float, where: str | None = None) -> None:
    for pattern, (says, holds) in RANGES.items():
        if fnmatch.fnmatchcase(name, pattern) and not holds(value):
            raise ParamsError(f"{where or name}: must be {says}, got {value!r}")


def _check_fields(where: str, section: object, classes: tuple[type, ...], internal: set[str]) -> None:
    """Unknown keys and each value's type and range, against the fields of `classes` (dataclasses)."""
    hints = {}
    for cls in classes:
        names = {f.name for f in dataclasses.fields(cls)} - internal
        hints |= {k: v for k, v in typing.get_type_hints(cls).items() if k in names}
    _refuse_unknown(section, hints, where)
    for key, value in section.items():
        _check_value(f"{where}.{key}", value, hints[key])


def _parsed(where: str, parse: Callable[[], object]) -> None:
    """Run a stage's own parser: what it refuses is refused here, as one line."""
    try:
        parse()
    except (ValueError, TypeError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ParamsError(message if where in message else f"{where}: {message}") from None


def _check_corpus(section: object, seed: object) -> None:
    if not isinstance(section, Mapping):
        raise ParamsError(f"corpus: expected a mapping of keys to values, got {section!r}")
    sources = registered_sources()
    name = section.get("source", DEFAULT_SOURCE)
    if name not in sources:
        raise ParamsError(f"corpus.source: unknown source {name!r}; sources: {', '.join(sources)}")
    shared = {k: v for k, v in section.items() if k not in sources and k != "source"}
    if set(shared) - _names(CorpusConfig):  # its message says which source a misplaced key belongs to
        _parsed("corpus", lambda: parse_corpus_params(section, int(seed)))
    _check_fields("corpus", shared, (CorpusConfig,), {"seed"})
    config = sources[name].config
    _check_fields(
        f"corpus.{name}", section.get(name) or {}, (config,), {f.name for f in dataclasses.fields(CorpusConfig)}
    )
    _parsed("corpus", lambda: parse_corpus_params(section, int(seed)))


def _check_track(track: str, section: object) -> None:
    _refuse_unknown(section, TRACK_KEYS, track)
    _check_value(f"{track}.enabled", section.get("enabled", True), bool)
    found = registry.backends(track)
    backend = section.get("backend", "auto")
    if backend != "auto" and backend not in found:
        raise ParamsError(f"{track}.backend: unknown backend {backend!r}; {track} backends: auto, {', '.join(found)}")
    defaults = {k: v for cls in found.values() for k, v in cls.options.items()}
    options = section.get("options") or {}
    _refuse_unknown(options, defaults, f"{track}.options")
    for key, value in options.items():
        if defaults[key] is not None:
            hint = float if isinstance(defaults[key], float) else type(defaults[key])
            _check_scalar(f"{track}.options.{key}", value, hint)


def _check_model(name: str, section: object, classes: tuple[type, ...], parse: Callable) -> None:
    _check_fields(name, section, classes, INTERNAL)
    for switch, on in (section.get("losses") or {}).items():
        _check_scalar(f"{name}.losses.{switch}", on, bool)
    _parsed(name, lambda: parse(dict(section), seed=0))


def _check_decoding(params: Mapping) -> None:
    section = params.get("decoding") or {}
    hints = typing.get_type_hints(DecodeConfig) | {"batch_size": int}
    _refuse_unknown(section, [k for k in hints if k not in ("temperature", "seed")], "decoding")
    for key, value in section.items():
        if key == "ctc_weight" and isinstance(value, Mapping):
            _refuse_unknown(value, MODELS, "decoding.ctc_weight")
            for model, weight in value.items():
                _check_value(f"decoding.ctc_weight.{model}", weight, float)
        else:
            _check_value(f"decoding.{key}", value, hints[key])
    for model in MODELS:
        _parsed("decoding", lambda m=model: decode_config(dict(params), m))


def _cross_field_rules(params: Mapping) -> None:
    """Rules that join fields: each names the params to change."""
    m, t = pose2gloss_configs(dict(params.get("pose2gloss") or {}), seed=0)
    rules = [
        (m.d_model % m.n_decoder_heads == 0, "pose2gloss.d_model must be a multiple of pose2gloss.n_decoder_heads"),
        (m.d_track % m.n_fusion_heads == 0, "pose2gloss.d_track must be a multiple of pose2gloss.n_fusion_heads"),
        (t.aug_speed[0] <= t.aug_speed[1], "pose2gloss.aug_speed: the first value must not exceed the second"),
        (not t.tracks or set(t.tracks) <= set(extractors.TRACK_ORDER),
         f"pose2gloss.tracks: unknown tracks {sorted(set(t.tracks or ()) - set(extractors.TRACK_ORDER))}; tracks: "
         f"{', '.join(extractors.TRACK_ORDER)}"),
        (t.tracks is None or len(t.tracks) > 0, "pose2gloss.tracks: an empty list reads nothing; null reads all five"),
        (any((params.get(k) or {}).get("enabled", True) for k in extractors.TRACK_ORDER),
         "every track is disabled (<track>.enabled: false): Stage I would read nothing"),
        (int((params.get("decoding") or {}).get("max_len", 64)) <= m.max_len,
         f"decoding.max_len must be at most pose2gloss.max_len ({m.max_len}), the longest sequence the decoder knows"),
    ]  # fmt: skip
    rules += _video2pose_rules(video2pose_configs(dict(params.get("video2pose") or {}), seed=0)[0])
    for holds, message in rules:
        if not holds:
            raise ParamsError(message)


def _video2pose_rules(v: Video2PoseConfig) -> list[tuple[bool, str]]:
    rules = [
        (v.d_temporal % v.temporal_heads == 0, "video2pose.d_temporal must be a multiple of video2pose.temporal_heads"),
    ]
    if v.backbone is None:  # a timm backbone brings its own sizes
        halvings = math.log2(v.patch_size / v.stem_patch) if v.patch_size >= v.stem_patch else -1
        rules += [
            (v.img_size >= v.patch_size and v.img_size % v.patch_size == 0,
             f"video2pose.img_size ({v.img_size}) must be a multiple of video2pose.patch_size ({v.patch_size}): each "
             "frame is cut into whole patches"),
            (v.vit_dim % v.vit_heads == 0, "video2pose.vit_dim must be a multiple of video2pose.vit_heads"),
            (v.stem != "conv" or halvings == int(halvings) >= 0,
             f"video2pose.patch_size ({v.patch_size}) must be video2pose.stem_patch ({v.stem_patch}) times a power "
             "of two for the conv stem"),
        ]  # fmt: skip
    return rules


def _names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def write_checked(params: Mapping, out: str | os.PathLike) -> None:
    """Check `params`; on success write `out`, whose bytes never depend on the params (so valid changes rerun
    only the stages that read them)."""
    check_params(params)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    tmp.write_text("params.yaml passed pipeline.check_params\n")
    os.replace(tmp, out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default=OUTPUT)
    args = ap.parse_args(argv)
    try:
        write_checked(load_params(args.params), args.out)
    except (ParamsError, FileNotFoundError, yaml.YAMLError) as err:
        raise SystemExit(f"{args.params}: {str(err).splitlines()[0]}") from None
    except ValueError as err:  # load_params: not a mapping at the top level
        raise SystemExit(f"{args.params}: {err}") from None
    print(f"check_params: {args.params} is valid")


if __name__ == "__main__":
    run_cli(main)
