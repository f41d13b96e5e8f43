"""Shared fixtures: a small synthetic corpus, generated once per test session."""

from __future__ import annotations

import dataclasses

import pytest

from pipeline.corpus.synthetic import SyntheticConfig, generate_corpus


def small_config(**overrides) -> SyntheticConfig:
    """A synthetic corpus small enough for tests (seconds), with the default difficulty. Overrides may set the
    shared corpus fields (split fractions, `min_train_occurrences`, `seed`) and the synthetic signer's alike."""
    base = dict(
        n_glosses=16,
        n_signers=4,
        n_unseen_signers=1,
        n_utterances=36,
        n_unseen_utterances=6,
        min_train_occurrences=2,
        tokens_per_utterance=(2, 4),
        width=64,
        height=64,
        fps=12.0,
        seed=7,
    )
    base.update(overrides)
    return SyntheticConfig(**base)


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory):
    """(config, corpus directory, summary) of a generated small corpus."""
    cfg = small_config()
    out = tmp_path_factory.mktemp("corpus") / "corpus"
    summary = generate_corpus(cfg, out, workers=2)
    return cfg, out, summary


@pytest.fixture(scope="session")
def features(small_corpus, tmp_path_factory):
    """(corpus directory, fused store) of the small corpus, every track extracted with its simulated backend."""
    import extractors
    from pipeline import extract
    from pipeline.fuse import fuse

    _, corpus, _ = small_corpus
    out = tmp_path_factory.mktemp("features")
    for t in extractors.TRACK_ORDER:
        extract.extract_track(t, corpus, out / "tracks", seed=1, workers=1)
    fuse(corpus, out / "tracks", out / "features.zarr")
    return corpus, out / "features.zarr"


def replace(cfg: SyntheticConfig, **kw) -> SyntheticConfig:
    return dataclasses.replace(cfg, **kw)
