"""Zarr v3 frame stores: every utterance's frames back to back, addressed by offsets (see DESIGN.md).

Layout of a store directory:

- one or more frame-aligned arrays, first axis ΣT (`values`, and e.g. `mask`), chunked along time, sharded
  (a few files for thousands of utterances: DVC hashes every file) and Blosc/zstd compressed;
- `offsets` int64 (N + 1,): utterance i is `array[offsets[i]:offsets[i + 1]]`;
- `utt_id` string (N,), aligned with `offsets`;
- group attributes: layout, names, provenance.

Writes are atomic: a writer builds `<path>.partial` and renames it to `<path>` on `close()`, so a store that
exists is complete.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec

SHARD_FRAMES = 32768
CHUNK_BYTES = 1 << 20  # ~1 MiB of raw frames per chunk: small enough that reading one utterance stays cheap
_INDEX_ARRAYS = ("offsets", "utt_id")


def _compressor() -> BloscCodec:
    # lz4 + byte shuffle: measured 2-3x faster to read than zstd for ~12 % more bytes (bench/bench_extract.py)
    return BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")


def chunk_frames_for(shape: tuple[int, ...], dtype: np.dtype, shard_frames: int = SHARD_FRAMES) -> int:
    """Frames per chunk: a power of two holding about CHUNK_BYTES, between 64 and the shard size."""
    row = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    frames = 1 << max(0, int(np.floor(np.log2(max(1, CHUNK_BYTES // max(row, 1))))))
    return int(min(max(frames, 64), shard_frames))


class FrameStoreWriter:
    """Append utterances one by one; the store appears at `path` only when `close()` completes.

    Args:
        path: the store directory to create (replaced if it exists, on close).
        arrays: name -> (per-frame shape, dtype), e.g. `{"values": ((1959,), "float32"), "mask": ((5,), "bool")}`.
        chunk_frames: frames per compressed chunk (default: about 1 MiB each, `chunk_frames_for`);
            shard_frames: frames per file (a multiple of every chunk size).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        arrays: dict[str, tuple[tuple[int, ...], str]],
        chunk_frames: int | None = None,
        shard_frames: int = SHARD_FRAMES,
    ):
        if not arrays or any(name in _INDEX_ARRAYS for name in arrays):
            raise ValueError(f"arrays must be non-empty and must not be named {_INDEX_ARRAYS}")
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".partial")
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.spec = {name: (tuple(shape), np.dtype(dtype)) for name, (shape, dtype) in arrays.items()}
        self.shard_frames = shard_frames
        self.group = zarr.open_group(str(self.tmp), mode="w", zarr_format=3)
        self.arrays = {
            name: self.group.create_array(
                name,
                shape=(0, *shape),
                chunks=(chunk_frames or chunk_frames_for(shape, dtype, shard_frames), *shape),
                shards=(shard_frames, *shape),
                dtype=dtype,
                compressors=_compressor(),
                fill_value=0,
            )
            for name, (shape, dtype) in self.spec.items()
        }
        self.utt_ids: list[str] = []
        self._seen: set[str] = set()
        self.lengths: list[int] = []
        self._buf: dict[str, list[np.ndarray]] = {name: [] for name in self.spec}
        self._buffered = 0

    def add(self, utt_id: str, **frames: np.ndarray) -> None:
        """Append one utterance: every declared array, each (T, *shape), all with the same T."""
        if set(frames) != set(self.spec):
            raise ValueError(f"{utt_id}: expected arrays {sorted(self.spec)}, got {sorted(frames)}")
        if utt_id in self._seen:
            raise ValueError(f"duplicate utterance id {utt_id!r}")
        lengths = {name: len(a) for name, a in frames.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"{utt_id}: arrays disagree on the number of frames: {lengths}")
        for name, a in frames.items():
            shape, dtype = self.spec[name]
            a = np.asarray(a)
            if a.shape[1:] != shape:
                raise ValueError(f"{utt_id}: {name} has per-frame shape {a.shape[1:]}, expected {shape}")
            if a.dtype.kind == "f" and not np.isfinite(a).all():
                raise ValueError(f"{utt_id}: {name} contains NaN or infinite values")
            self._buf[name].append(a.astype(dtype, copy=False))
        self.utt_ids.append(utt_id)
        self._seen.add(utt_id)
        self.lengths.append(next(iter(lengths.values())))
        self._buffered += self.lengths[-1]
        if self._buffered >= self.shard_frames:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        """Write whole shards (all that is buffered if `final`), so no shard is rewritten."""
        n = self._buffered if final else (self._buffered // self.shard_frames) * self.shard_frames
        if n == 0:
            return
        for name, parts in self._buf.items():
            block = np.concatenate(parts, axis=0)
            self.arrays[name].append(block[:n])
            self._buf[name] = [block[n:]] if n < len(block) else []
        self._buffered -= n

    def close(self, attrs: dict | None = None) -> Path:
        """Finish the store (offsets, ids, attributes) and move it into place atomically."""
        self._flush(final=True)
        offsets = np.concatenate([[0], np.cumsum(self.lengths, dtype=np.int64)]).astype(np.int64)
        self.group.create_array("offsets", data=offsets, chunks=(max(1, len(offsets)),), compressors=_compressor())
        ids = self.group.create_array(
            "utt_id", shape=(len(self.utt_ids),), dtype=str, chunks=(max(1, len(self.utt_ids)),)
        )
        if self.utt_ids:
            ids[:] = np.array(self.utt_ids, dtype=object)
        self.group.attrs.update({**(attrs or {}), "n_utterances": len(self.utt_ids), "n_frames": int(offsets[-1])})
        if self.path.exists():
            shutil.rmtree(self.path)
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> FrameStoreWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


class FrameStore:
    """Read access to a finished frame store: one utterance, a batch, or whole arrays."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not (self.path / "zarr.json").exists():
            partial = self.path.with_name(self.path.name + ".partial")
            hint = " (an unfinished write exists beside it)" if partial.exists() else ""
            raise FileNotFoundError(f"no frame store at {self.path}{hint}")
        self.group = zarr.open_group(str(self.path), mode="r", zarr_format=3)
        self.offsets = np.asarray(self.group["offsets"][:], dtype=np.int64)
        self.utt_ids: list[str] = [str(u) for u in self.group["utt_id"][:]]
        self.attrs = dict(self.group.attrs)
        self._index = {u: i for i, u in enumerate(self.utt_ids)}
        if len(self.offsets) != len(self.utt_ids) + 1:
            raise ValueError(f"{self.path}: {len(self.offsets)} offsets for {len(self.utt_ids)} utterances")

    @property
    def names(self) -> list[str]:
        return sorted(k for k in self.group.array_keys() if k not in _INDEX_ARRAYS)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.utt_ids)

    def index(self, utt_id: str) -> int:
        try:
            return self._index[utt_id]
        except KeyError:
            raise KeyError(f"utterance {utt_id!r} is not in {self.path}") from None

    def read(self, key: str | int, name: str = "values") -> np.ndarray:
        """(T, ...) frames of one utterance, by id or position."""
        i = self.index(key) if isinstance(key, str) else int(key)
        return np.asarray(self.group[name][self.offsets[i] : self.offsets[i + 1]])

    def read_many(self, keys: Sequence[str | int], name: str = "values") -> list[np.ndarray]:
        """Several utterances with one read of the covering range (fast for neighbouring utterances)."""
        idx = [self.index(k) if isinstance(k, str) else int(k) for k in keys]
        if not idx:
            return []
        lo, hi = self.offsets[min(idx)], self.offsets[max(idx) + 1]
        block = np.asarray(self.group[name][lo:hi])
        return [block[self.offsets[i] - lo : self.offsets[i + 1] - lo] for i in idx]

    def read_all(self, name: str = "values") -> np.ndarray:
        """The whole array, read shard by shard (measured faster than one slice over a large store)."""
        arr = self.group[name]
        out = np.empty(arr.shape, dtype=arr.dtype)
        for lo in range(0, arr.shape[0], SHARD_FRAMES):
            out[lo : lo + SHARD_FRAMES] = arr[lo : lo + SHARD_FRAMES]
        return out

    def iter_utterances(
        self, name: str = "values", block_frames: int = SHARD_FRAMES
    ) -> Iterator[tuple[str, np.ndarray]]:
        """(utt_id, frames) for every utterance in store order, reading about `block_frames` frames at a time.

        A pass over the whole store costs about one bulk read, not one read per utterance.
        """
        arr = self.group[name]
        i, n = 0, len(self.utt_ids)
        while i < n:
            j = i + 1
            while j < n and self.offsets[j + 1] - self.offsets[i] <= block_frames:
                j += 1
            lo = self.offsets[i]
            block = np.asarray(arr[lo : self.offsets[j]])
            for k in range(i, j):
                yield self.utt_ids[k], block[self.offsets[k] - lo : self.offsets[k + 1] - lo]
            i = j

    def check_ids(self, expected: Sequence[str]) -> None:
        """Raise if the store's utterances are not exactly `expected`, in order."""
        if list(expected) != self.utt_ids:
            missing = sorted(set(expected) - set(self.utt_ids))[:5]
            extra = sorted(set(self.utt_ids) - set(expected))[:5]
            raise ValueError(
                f"{self.path} does not match the manifest: {len(self.utt_ids)} utterances vs {len(expected)}"
                f"; missing {missing}, unexpected {extra}"
            )
