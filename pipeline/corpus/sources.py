"""Corpus sources: the registry `prepare` looks the `corpus.source` param up in, and the config they share.

params.yaml's `corpus` section holds the fields every source shares (split fractions, vocabulary selection; the
top-level `seed` comes with them), `source: <name>`, and one `<name>:` subsection per source with that source's
own knobs. A source is one module:

    @dataclass(frozen=True)
    class WLASLConfig(CorpusConfig):           # shared fields + the `corpus.wlasl` subsection
        json_path: str = ""

    @register_source("wlasl", config=WLASLConfig)
    def build(cfg: WLASLConfig, out_dir: Path, workers: int | None) -> dict:
        ...                                     # write videos, then manifest.write_manifest(rows, out_dir, vocab)
        return manifest.manifest_summary(rows, vocab)

plus its import in `_load` below. `build` writes into an empty folder that `build_corpus` moves into
place only when it returns, so a failed or killed build never leaves a half-written corpus. Nothing here imports a
source's runtime: the modules are imported on the first lookup.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from pipeline.corpus.manifest import atomic_corpus_dir

DEFAULT_SOURCE = "synthetic"


@dataclass(frozen=True)
class CorpusConfig:
    """The fields of params.yaml's `corpus` section that every source shares; each source's config extends it."""

    val_fraction: float = 0.1  # share of the (seen signers') utterances held out for validation
    test_fraction: float = 0.1  # ... and for test
    min_train_occurrences: int = 3  # vocabulary selection: every gloss occurs at least this often in train
    seed: int = 0  # params.yaml's top-level `seed`

    def __post_init__(self) -> None:
        if not (0 <= self.val_fraction and 0 <= self.test_fraction and self.val_fraction + self.test_fraction < 1):
            raise ValueError(
                "corpus params: val_fraction and test_fraction must be non-negative and sum to less than 1"
            )
        if int(self.min_train_occurrences) < 1:
            raise ValueError(
                f"corpus params: min_train_occurrences must be at least 1, got {self.min_train_occurrences}"
            )

    @classmethod
    def shared_fields(cls) -> tuple[str, ...]:
        """The keys that sit directly under `corpus:` (seed excepted: it is params.yaml's top-level one)."""
        return tuple(f.name for f in fields(CorpusConfig) if f.name != "seed")

    @classmethod
    def own_fields(cls) -> tuple[str, ...]:
        """The keys of this source's `corpus.<source>` subsection."""
        shared = {f.name for f in fields(CorpusConfig)}
        return tuple(f.name for f in fields(cls) if f.name not in shared)

    @classmethod
    def parse_own(cls, own: dict, where: str) -> dict:
        """Hook: turn the subsection's YAML values into field values (nested configs, tuples). `where` names the
        subsection in error messages."""
        return own

    @classmethod
    def from_params(cls: type[C], shared: Mapping, own: Mapping | None, seed: int, where: str) -> C:
        """Build from the shared `corpus` keys and the source's subsection `where` (e.g. `corpus.synthetic`);
        unknown keys are an error naming them and the section, never silently ignored."""
        _refuse_unknown(shared, cls.shared_fields(), "corpus")
        own = dict(own or {})
        shared_here = {k: f"{k} is shared by every source: set corpus.{k}" for k in cls.shared_fields()}
        _refuse_unknown(own, cls.own_fields(), where, shared_here)
        return cls(**shared, **cls.parse_own(own, where), seed=int(seed))

    def to_params(self, source: str) -> dict:
        """This config laid out as params.yaml's `corpus` section (the seed left out: it is top-level there)."""
        values = asdict(self)
        del values["seed"]
        shared = {k: values.pop(k) for k in self.shared_fields()}
        return {"source": source, **shared, source: values}


C = TypeVar("C", bound=CorpusConfig)
BuildFn = Callable[[Any, Path, "int | None"], dict]


@dataclass(frozen=True)
class Source:
    name: str
    config: type[CorpusConfig]
    build: BuildFn


_REGISTRY: dict[str, Source] = {}
_LOADED = False


def register_source(name: str, config: type[CorpusConfig]) -> Callable[[BuildFn], BuildFn]:
    """Decorator: make `build(cfg, out_dir, workers) -> summary` the `name` source (`corpus.source: <name>`), its
    subsection `corpus.<name>` parsed into `config` (a `CorpusConfig` subclass)."""
    if not issubclass(config, CorpusConfig):
        raise TypeError(f"source {name!r}: its config {config.__name__} must extend CorpusConfig")
    if name in CorpusConfig.shared_fields() or name == "source":
        raise ValueError(f"source name {name!r} collides with a shared corpus key")

    def wrap(build: BuildFn) -> BuildFn:
        old = _REGISTRY.get(name)
        if old is not None and old.build.__qualname__ != build.__qualname__:
            raise ValueError(f"a corpus source named {name!r} is already registered ({old.build.__module__})")
        _REGISTRY[name] = Source(name, config, build)
        return build

    return wrap


def _load() -> None:
    """Import the built-in source modules once, so that their registrations run. A new source adds its import here:
    spelled out rather than imported by name, so that the import closure of `prepare` (tests/test_dvc_deps.py)
    sees every source it may run."""
    global _LOADED
    if not _LOADED:
        from pipeline.corpus import asllrp, pose_files, synthetic, table, wlasl  # noqa: F401  (each registers one)

        _LOADED = True


def registered_sources() -> dict[str, Source]:
    _load()
    return dict(sorted(_REGISTRY.items()))


def get_source(name: str) -> Source:
    """The source registered as `name`; an unknown name is an error listing the registered ones."""
    found = registered_sources()
    if name not in found:
        raise ValueError(f"corpus params: source {name!r} is not known; set corpus.source to one of {list(found)}")
    return found[name]


def source_of(cfg: CorpusConfig) -> Source:
    """The source whose config type `cfg` is."""
    for src in registered_sources().values():
        if type(cfg) is src.config:
            return src
    raise ValueError(f"{type(cfg).__name__} is the config of no registered corpus source")


def parse_corpus_params(section: Mapping, seed: int) -> tuple[Source, CorpusConfig]:
    """params.yaml's `corpus` section -> (the selected source, its typed config).

    Subsections of other registered sources may stay in the file (a researcher keeps several configured); only
    the selected one is parsed, so an unfinished one does not stop the others.
    """
    if not isinstance(section, Mapping):
        raise ValueError(f"corpus params: expected a mapping, got {type(section).__name__}")
    section = dict(section)
    source = get_source(str(section.pop("source", DEFAULT_SOURCE)))
    sources = registered_sources()
    shared = {k: section.pop(k) for k in CorpusConfig.shared_fields() if k in section}
    subsections = {k: section.pop(k) for k in list(section) if k in sources}
    _refuse_unknown_shared(section, sources)
    own = subsections.get(source.name)
    if own is not None and not isinstance(own, Mapping):
        raise ValueError(f"corpus.{source.name} params: expected a mapping, got {own!r}")
    return source, source.config.from_params(shared, own, seed, f"corpus.{source.name}")


def build_corpus(section: Mapping, seed: int, out_dir: str | os.PathLike, workers: int | None = None) -> dict[str, Any]:
    """Build the corpus params.yaml's `corpus` section selects into `out_dir`; returns its summary (the stage's
    metrics)."""
    _, cfg = parse_corpus_params(section, seed)
    return build_source(cfg, out_dir, workers)


def build_source(cfg: CorpusConfig, out_dir: str | os.PathLike, workers: int | None = None) -> dict[str, Any]:
    """Build the corpus a typed config describes into `out_dir`, atomically; also writes `config.json` (the
    resolved config).

    The summary is the source's, plus `source` and `generation_seconds` (wall time of the whole build).
    """
    t0 = time.perf_counter()
    source = source_of(cfg)
    with atomic_corpus_dir(out_dir) as tmp:
        summary = source.build(cfg, tmp, workers)
        # laid out as params.yaml, so `parse_corpus_params(c["corpus"], c["seed"])` rebuilds the config
        resolved = {"seed": cfg.seed, "corpus": cfg.to_params(source.name)}
        (tmp / "config.json").write_text(json.dumps(resolved, indent=1) + "\n")
    return {"source": source.name, **summary, "generation_seconds": round(time.perf_counter() - t0, 2)}


def _refuse_unknown(values: Mapping, known: tuple[str, ...], where: str, hints: Mapping | None = None) -> None:
    """Refuse keys outside `known`, naming them and `where`; `hints` says where a misplaced key belongs."""
    if unknown := sorted(set(values) - set(known)):
        said = "".join(f"; {hints[k]}" for k in unknown if k in (hints or {}))
        raise ValueError(f"{where} params: unknown keys {unknown}; known keys are {sorted(known)}{said}")


def _refuse_unknown_shared(values: Mapping, sources: dict[str, Source]) -> None:
    """Refuse unknown keys directly under `corpus`; for one that a source reads, say which subsection it belongs in
    (before sources had subsections, every synthetic-signer knob sat directly under `corpus`)."""
    known = ("source", *CorpusConfig.shared_fields(), *sources)
    hints = {k: f"{k} belongs to source {s.name!r}: set corpus.{s.name}.{k}" for s in sources.values()
             for k in s.config.own_fields()}  # fmt: skip
    _refuse_unknown(values, known, "corpus", hints)
