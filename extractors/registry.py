"""Extractor backends: the interface every backend implements and the registry `extract` looks them up in.

A backend is one class, registered for one track under one name:

    @register("dwpose", "onnx")
    class DWPoseONNX(Backend):
        options = {"detector": None, "pose_model": None}   # its `<track>.options` and their defaults

        def __init__(self, options, corpus_dir, seed): ...  # open once per worker: load the model
        def extract(self, row, index) -> TrackFrames: ...   # one utterance of the corpus
        def version(self) -> str: ...
        def weights_hash(self) -> str | None: ...

Backends live in the `extractors.backends` package, one module each, imported by the package on the first lookup:
adding a backend is adding its module (and its import in `extractors/backends/__init__.py`). Nothing here imports
a backend's runtime (a backend imports its own lazily, when opened).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from extractors.base import TrackFrames
from extractors.runtime import BackendSetupError
from pipeline.hashing import sha256_files  # noqa: F401  (the backends' weights hash, imported from here)
from pipeline.layout import TRACK_ORDER


class Backend(ABC):
    """One way of producing one track from a corpus' utterances."""

    track: ClassVar[str] = ""
    name: ClassVar[str] = ""
    real: ClassVar[bool] = True  # False: a simulation that needs the synthetic corpus' ground truth
    reads: ClassVar[str] = "video"  # what it reads of a manifest row: "video", "pose" (the .pose file) or "nothing"
    options: ClassVar[dict[str, object]] = {}  # params the backend reads from its track's section, with defaults

    def __init__(self, options: dict, corpus_dir: Path, seed: int) -> None:
        """Open the backend (load models, open stores) once per worker process; `options` has every key of
        `self.options`. A missing or wrong file or option raises `BackendSetupError` naming the param."""
        self.corpus_dir = Path(corpus_dir)
        self.seed = seed

    @abstractmethod
    def extract(self, row: dict, index: int) -> TrackFrames:
        """The track for one manifest row (`row["video"]` is relative to the corpus folder); `index` is the row's
        position in the manifest. Raise OSError or ValueError for input that cannot be read: it is recorded as a
        skip and the rest of the corpus goes on."""

    def max_workers(self) -> int | None:
        """How many worker processes may each open this backend (None: as many as there are cores). A backend on
        a GPU says 1: one model on the device, fed in batches, instead of one copy per process."""
        return None

    def param(self, option: str) -> str:
        """The params key of one of this backend's options, as error messages name it."""
        return f"{self.track}.options.{option}"

    def version(self) -> str:
        """What ran, in words a reader of the store's attributes understands (library and model versions)."""
        return f"{self.track}/{self.name}"

    def weights_hash(self) -> str | None:
        """sha256 of the model weights the backend read (None when it reads none)."""
        return None


_REGISTRY: dict[tuple[str, str], type[Backend]] = {}
_DISCOVERED = False


def register(track: str, name: str, real: bool = True) -> Callable[[type[Backend]], type[Backend]]:
    """Class decorator: make `cls` the `name` backend of `track` (`<track>.backend: <name>` in params)."""
    if track not in TRACK_ORDER:
        raise ValueError(f"unknown track {track!r}; tracks are {list(TRACK_ORDER)}")

    def wrap(cls: type[Backend]) -> type[Backend]:
        if (track, name) in _REGISTRY and _REGISTRY[(track, name)].__qualname__ != cls.__qualname__:
            raise ValueError(f"a {name!r} backend of {track} is already registered ({_REGISTRY[(track, name)]})")
        cls.track, cls.name, cls.real = track, name, real
        _REGISTRY[(track, name)] = cls
        return cls

    return wrap


def _discover() -> None:
    """Import the backends package once, so that every backend's registration runs."""
    global _DISCOVERED
    if not _DISCOVERED:
        import extractors.backends  # noqa: F401

        _DISCOVERED = True


def backends(track: str) -> dict[str, type[Backend]]:
    """{name: class} of every backend registered for `track`."""
    _discover()
    return {n: cls for (t, n), cls in sorted(_REGISTRY.items()) if t == track}


def lookup(track: str, name: str) -> type[Backend]:
    """The backend class registered as `name` for `track`; an unknown name is an error naming the param."""
    found = backends(track)
    if name not in found:
        raise BackendSetupError(
            f"{track}.backend {name!r} is not a backend of {track}; choose auto or one of {sorted(found)}"
        )
    return found[name]


def resolve(track: str, requested: str, synthetic: bool, videos: bool = True) -> type[Backend]:
    """`auto` is the simulated backend on the synthetic corpus (it has ground truth), the real one on a corpus of
    videos, and on a corpus of `.pose` files without videos (`videos` False) the backend reading them where the
    track has one, else `none` (the track all masked)."""
    if track not in TRACK_ORDER:
        raise ValueError(f"unknown track {track!r}; tracks are {list(TRACK_ORDER)}")
    if requested != "auto":
        cls = lookup(track, requested)
    elif synthetic:
        cls = lookup(track, "simulated")
    elif not videos:
        readers = [c for c in backends(track).values() if c.reads == "pose"]
        cls = readers[0] if readers else lookup(track, "none")
    else:
        real = [cls for cls in backends(track).values() if cls.real and cls.reads == "video"]
        if not real:
            raise BackendSetupError(
                f"no real {track} backend is built yet, and this corpus has no ground truth to simulate it from: "
                f"disable the track with {track}.enabled: false"
            )
        cls = real[0]
    if not cls.real and not synthetic:
        raise BackendSetupError(f"{track}.backend {cls.name} needs the synthetic corpus' ground truth (skeleton.zarr)")
    if cls.reads == "video" and not videos:
        raise BackendSetupError(
            f"{track}.backend {cls.name} reads videos, and this corpus has none (.pose files only): set "
            f"{track}.backend to auto or one of {sorted(n for n, c in backends(track).items() if c.reads != 'video')}"
        )
    return cls


def backend_options(track: str, cls: type[Backend], options: dict) -> dict:
    """The backend's options (`<track>.options` in params): its defaults overridden by `options`. A key that no
    backend of the track reads is an error naming it (options of the track's other backends are allowed, so one
    params file can switch backends)."""
    known = set().union(*(set(c.options) for c in backends(track).values()))
    if unknown := sorted(set(options) - known):
        raise BackendSetupError(f"{track}.options: unknown keys {unknown}; the {track} backends read {sorted(known)}")
    return {k: options.get(k, default) for k, default in cls.options.items()}
