"""Zarr frame store: bit-exact round trip, atomic writes, validation, few files."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.store import FrameStore, FrameStoreWriter


def _utterances(n: int, dims: int, seed: int = 0) -> list[tuple[str, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        t = int(rng.integers(1, 90))
        out.append((f"u{i:05d}#ns-fs-X", rng.normal(size=(t, dims)).astype(np.float32), rng.random((t, 5)) > 0.3))
    return out


def test_round_trip_is_bit_exact(tmp_path):
    utts = _utterances(50, 7)
    with FrameStoreWriter(tmp_path / "s.zarr", {"values": ((7,), "float32"), "mask": ((5,), "bool")}, 64, 256) as w:
        for u, v, m in utts:
            w.add(u, values=v, mask=m)
        w.close({"track": "test", "dims": 7})
    store = FrameStore(tmp_path / "s.zarr")
    assert store.utt_ids == [u for u, _, _ in utts]
    assert store.attrs["track"] == "test" and store.attrs["n_frames"] == sum(len(v) for _, v, _ in utts)
    assert store.names == ["mask", "values"]
    for u, v, m in utts[::7]:
        assert store.read(u).tobytes() == v.tobytes()
        np.testing.assert_array_equal(store.read(u, "mask"), m)
    batch = store.read_many([utts[3][0], utts[1][0], 10])
    assert [b.tobytes() for b in batch] == [utts[3][1].tobytes(), utts[1][1].tobytes(), utts[10][1].tobytes()]
    assert store.read_all().tobytes() == np.concatenate([v for _, v, _ in utts]).tobytes()
    walked = list(store.iter_utterances("values", block_frames=300))
    assert [u for u, _ in walked] == store.utt_ids
    assert all(a.tobytes() == v.tobytes() for (_, a), (_, v, _) in zip(walked, utts))


def test_many_utterances_make_few_files(tmp_path):
    utts = _utterances(3000, 4, seed=1)
    w = FrameStoreWriter(tmp_path / "s.zarr", {"values": ((4,), "float32")}, chunk_frames=2048, shard_frames=32768)
    for u, v, _ in utts:
        w.add(u, values=v)
    w.close()
    n_files = sum(1 for p in (tmp_path / "s.zarr").rglob("*") if p.is_file())
    assert len(FrameStore(tmp_path / "s.zarr")) == 3000
    assert n_files < 20, n_files


def test_store_is_invisible_until_closed_and_an_error_leaves_nothing(tmp_path):
    path = tmp_path / "s.zarr"
    w = FrameStoreWriter(path, {"values": ((3,), "float32")})
    w.add("a", values=np.ones((4, 3)))
    with pytest.raises(FileNotFoundError, match="unfinished write"):
        FrameStore(path)
    with pytest.raises(RuntimeError):
        with FrameStoreWriter(path, {"values": ((3,), "float32")}) as w2:
            w2.add("a", values=np.ones((4, 3)))
            raise RuntimeError("killed")
    assert not path.exists() and not path.with_name("s.zarr.partial").exists()


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        ({"values": np.full((3, 3), np.nan)}, "NaN"),
        ({"values": np.ones((3, 4))}, "per-frame shape"),
        ({"values": np.ones((3, 3)), "mask": np.ones(3)}, "expected arrays"),
    ],
)
def test_bad_frames_are_refused(tmp_path, frames, message):
    w = FrameStoreWriter(tmp_path / "s.zarr", {"values": ((3,), "float32")})
    with pytest.raises(ValueError, match=message):
        w.add("a", **frames)


def test_duplicate_ids_and_manifest_mismatch_are_caught(tmp_path):
    w = FrameStoreWriter(tmp_path / "s.zarr", {"values": ((2,), "float32")})
    w.add("a", values=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="duplicate"):
        w.add("a", values=np.zeros((2, 2)))
    w.add("b", values=np.zeros((1, 2)))
    w.close()
    store = FrameStore(tmp_path / "s.zarr")
    store.check_ids(["a", "b"])
    with pytest.raises(ValueError, match=r"missing \['c'\]"):
        store.check_ids(["a", "b", "c"])
    with pytest.raises(KeyError, match="not in"):
        store.read("zz")
