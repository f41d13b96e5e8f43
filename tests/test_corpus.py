"""Corpora: the synthetic signer (determinism, splits, lexicon, videos, kinematics, gloss strings, bad params), the
source registry and its params layout, the manifest helpers importers share, and the preview."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import small_config

from pipeline.corpus import manifest, preview, sources, synthetic
from pipeline.corpus.glossary import CONVENTION_GLOSSES, gloss_names
from pipeline.corpus.manifest import read_manifest
from pipeline.corpus.motion import Signer
from pipeline.corpus.phonology import PARAM_FIELDS, Lexicon, differing_params, make_lexicon
from pipeline.corpus.preview import make_preview
from pipeline.corpus.skeleton import P, bone_lengths
from pipeline.corpus.synthetic import SKELETON_LAYOUT, SyntheticConfig, generate_corpus
from pipeline.store import FrameStore
from pipeline.vocab import Vocab, tokenize


def _points(values: np.ndarray) -> np.ndarray:
    a, b = SKELETON_LAYOUT["points"]
    return values[:, a:b].reshape(len(values), -1, 3)


# --- determinism --------------------------------------------------------------------------------------------
def test_same_params_give_identical_manifest_and_skeleton(small_corpus, tmp_path):
    cfg, first, _ = small_corpus
    second = tmp_path / "again"
    generate_corpus(cfg, second, workers=1)  # a different worker count must not matter
    assert (first / "manifest.parquet").read_bytes() == (second / "manifest.parquet").read_bytes()
    for name in ("vocab.json", "lexicon.json", "signers.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    a, b = FrameStore(first / "skeleton.zarr"), FrameStore(second / "skeleton.zarr")
    assert a.utt_ids == b.utt_ids
    np.testing.assert_array_equal(a.offsets, b.offsets)
    for name in ("values", "token"):
        x, y = a.read_all(name), b.read_all(name)
        assert x.tobytes() == y.tobytes()


def test_another_seed_gives_another_corpus(small_corpus, tmp_path):
    cfg, first, _ = small_corpus
    other = tmp_path / "other"
    generate_corpus(small_config(seed=cfg.seed + 1, n_utterances=12, n_unseen_utterances=2, n_glosses=8), other, 1)
    assert read_manifest(first)["glosses"].tolist()[:5] != read_manifest(other)["glosses"].tolist()[:5]


# --- splits and coverage --------------------------------------------------------------------------------------
def test_splits_are_disjoint_and_unseen_signers_are_held_out(small_corpus):
    cfg, corpus, summary = small_corpus
    m = read_manifest(corpus)
    assert m["utt_id"].is_unique
    assert set(m["split"]) == {"train", "val", "test", "test_unseen"}
    seen_signers = set(m.loc[m["split"] != "test_unseen", "signer"])
    unseen_signers = set(m.loc[m["split"] == "test_unseen", "signer"])
    assert unseen_signers and not (seen_signers & unseen_signers)
    assert len(unseen_signers) == cfg.n_unseen_signers
    signers = {s["signer_id"]: s for s in json.loads((corpus / "signers.json").read_text())}
    assert all(not signers[s]["seen"] for s in unseen_signers)
    assert summary.utterances == m["split"].value_counts().to_dict() | {}
    assert (m["split"] == "train").sum() == cfg.n_utterances - 2 * round(0.1 * cfg.n_utterances)


def test_every_evaluation_gloss_is_in_train_often_enough(small_corpus):
    cfg, corpus, _ = small_corpus
    m = read_manifest(corpus)
    train_counts = pd.Series([g for s in m.loc[m.split == "train", "glosses"] for g in tokenize(s)]).value_counts()
    vocab = Vocab.load(corpus / "vocab.json")
    assert set(train_counts.index) == set(vocab.glosses)  # every gloss of the lexicon is trained on
    assert train_counts.min() >= cfg.min_train_occurrences
    for split in ("val", "test", "test_unseen"):
        glosses = {g for s in m.loc[m.split == split, "glosses"] for g in tokenize(s)}
        assert glosses <= set(train_counts.index), split


def test_continuous_utterances_do_not_repeat_a_gloss_back_to_back(small_corpus):
    _, corpus, _ = small_corpus
    for s in read_manifest(corpus)["glosses"]:
        toks = tokenize(s)
        assert all(a != b for a, b in zip(toks, toks[1:])), s


@pytest.mark.parametrize("task", ["isolated", "mixed"])
def test_isolated_and_mixed_tasks(task, tmp_path):
    cfg = small_config(task=task, isolated_fraction=0.5, n_utterances=40, n_unseen_utterances=4, n_glosses=10)
    generate_corpus(cfg, tmp_path / "c", workers=1)
    m = read_manifest(tmp_path / "c")
    lengths = m["glosses"].str.split().str.len()
    assert (lengths[m.task == "isolated"] == 1).all()
    assert (lengths[m.task == "continuous"] >= 2).all()
    if task == "isolated":
        assert (m.task == "isolated").all()
    else:
        assert set(m.task) == {"isolated", "continuous"}


# --- lexicon ------------------------------------------------------------------------------------------------
def test_minimal_pairs_differ_in_exactly_one_parameter(small_corpus):
    _, corpus, _ = small_corpus
    lex = Lexicon.from_dict(json.loads((corpus / "lexicon.json").read_text()))
    big = make_lexicon(300, 0.3, np.random.default_rng(3))
    for lexicon in (lex, big):
        signs = lexicon.by_gloss()
        for a, b, field in lexicon.minimal_pairs:
            assert differing_params(signs[a], signs[b]) == [field]
        params = [s.params() for s in lexicon.signs]
        assert len(set(params)) == len(params)  # no two glosses share all parameters
    assert len(big.minimal_pairs) == 45  # 0.3 x 300 glosses / 2
    assert {f for _, _, f in big.minimal_pairs} >= set(PARAM_FIELDS) - {"handshape_end"}


def test_gloss_names_cover_the_asllrp_conventions():
    names = gloss_names(2000, np.random.default_rng(0))
    assert len(set(names)) == 2000
    assert names[: len(CONVENTION_GLOSSES)] == list(CONVENTION_GLOSSES)
    for marker in ("#", "/", "+", "-", ":", "_", "ns-fs-"):
        assert any(marker in n for n in names), marker
    assert all(len(n.split()) == 1 for n in names)


def test_gloss_strings_round_trip_through_manifest_and_vocab(small_corpus):
    _, corpus, _ = small_corpus
    vocab = Vocab.load(corpus / "vocab.json")
    assert set(CONVENTION_GLOSSES[:16]) == set(vocab.glosses)  # a 16-gloss lexicon is all convention glosses
    for s in read_manifest(corpus)["glosses"]:
        assert vocab.decode(vocab.encode(s)) == s
    round_trip = Vocab.load(corpus / "vocab.json")
    assert round_trip == vocab and round_trip.itos == vocab.itos


# --- videos ---------------------------------------------------------------------------------------------------
def test_videos_decode_with_the_manifest_frame_count_and_fps(small_corpus):
    cfg, corpus, _ = small_corpus
    m = read_manifest(corpus)
    for row in m.iloc[:: max(1, len(m) // 8)].itertuples():
        path = corpus / row.video
        cap = cv2.VideoCapture(str(path))
        n_cv = 0
        while cap.read()[0]:
            n_cv += 1
        assert n_cv == row.n_frames
        assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(row.fps)
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
            assert float(stream.average_rate) == pytest.approx(row.fps)
        assert len(frames) == row.n_frames
        assert frames[0].shape == (cfg.height, cfg.width, 3)
        assert np.std(frames[len(frames) // 2]) > 10  # a rendered scene, not a blank frame


def test_the_signer_is_drawn_where_the_skeleton_projects(small_corpus):
    """Rendered pixels near the projected head differ from the empty background (skeleton and video agree)."""
    _, corpus, _ = small_corpus
    from pipeline.corpus.skeleton import project

    store = FrameStore(corpus / "skeleton.zarr")
    m = read_manifest(corpus)
    row = m.iloc[0]
    values = store.read(row.utt_id)
    a, b = SKELETON_LAYOUT["camera"]
    uv, _ = project(_points(values), values[:, a:b])
    cap = cv2.VideoCapture(str(corpus / row.video))
    ok, frame = cap.read()
    assert ok
    x, y = np.round(uv[0, P["face_30"]]).astype(int)  # nose tip
    assert 0 <= x < row.width and 0 <= y < row.height
    patch = frame[max(0, y - 2) : y + 3, max(0, x - 2) : x + 3].reshape(-1, 3).mean(0)
    skin = np.array(Signer.from_dict(json.loads((corpus / "signers.json").read_text())[0]).skin)
    corner = frame[:3, :3].reshape(-1, 3).mean(0)
    assert np.abs(patch - skin).sum() < np.abs(corner - skin).sum() + 60


# --- kinematics -----------------------------------------------------------------------------------------------
def test_forward_kinematics_keeps_bone_lengths_constant(small_corpus):
    _, corpus, _ = small_corpus
    store = FrameStore(corpus / "skeleton.zarr")
    m = read_manifest(corpus)
    for signer, rows in m.groupby("signer"):
        lengths = np.concatenate([bone_lengths(_points(store.read(u))) for u in rows.utt_id])
        assert np.ptp(lengths, axis=0).max() < 1e-5, signer  # float32 storage, metres
        assert lengths.min() > 0.005


def test_hands_really_move_and_the_dominant_hand_moves_most(small_corpus):
    _, corpus, _ = small_corpus
    store = FrameStore(corpus / "skeleton.zarr")
    m = read_manifest(corpus)
    signers = {s["signer_id"]: s for s in json.loads((corpus / "signers.json").read_text())}
    for signer, rows in m.groupby("signer"):
        travel = {"left": 0.0, "right": 0.0}
        for u in rows.utt_id:
            pts = _points(store.read(u))
            for side in travel:
                travel[side] += np.linalg.norm(np.diff(pts[:, P[f"{side}_wrist"]], axis=0), axis=1).sum()
        dominant = signers[signer]["dominant"]
        other = "left" if dominant == "right" else "right"
        assert travel[dominant] > travel[other] > 0, (signer, travel)


def test_token_alignment_marks_each_sign_in_order(small_corpus):
    _, corpus, _ = small_corpus
    store = FrameStore(corpus / "skeleton.zarr")
    for row in read_manifest(corpus).itertuples():
        token = store.read(row.utt_id, "token")
        assert len(token) == row.n_frames
        signed = token[token >= 0]
        assert list(dict.fromkeys(signed.tolist())) == list(range(len(row.glosses.split())))
        assert token[0] == -1 and token[-1] == -1  # starts and ends at rest


def test_face_reacts_to_non_manual_markers():
    from pipeline.corpus.motion import Difficulty, utterance_motion
    from pipeline.corpus.phonology import Sign
    from pipeline.corpus.skeleton import forward_kinematics

    signer = synthetic.make_signers(SyntheticConfig(), np.random.default_rng(0))[0]
    base = Sign("A", "B", None, "neutral", "hold", 1, "palm_out_up", "one", "none")
    brow = Sign("B", "B", None, "neutral", "hold", 1, "palm_out_up", "one", "brow_raise")
    shake = Sign("C", "B", None, "neutral", "hold", 1, "palm_out_up", "one", "head_shake")
    out = {}
    for s in (base, brow, shake):
        mo = utterance_motion([s], signer, 30, Difficulty(token_variation=0.0), np.random.default_rng(1), False)
        pts = forward_kinematics(mo.pose, mo.transl, signer.shape, mo.brow)
        brow_h = (pts[:, P["face_19"], 1] - pts[:, P["face_30"], 1]).max()
        nose_x = np.ptp(pts[:, P["face_30"], 0])
        out[s.nmm] = (brow_h, nose_x)
    assert out["brow_raise"][0] > out["none"][0] + 0.005
    assert out["head_shake"][1] > 3 * out["none"][1]


def test_ik_puts_the_palm_on_reachable_targets():
    from scipy.spatial.transform import Rotation

    from pipeline.corpus.motion import arm_ik, palm_offset
    from pipeline.corpus.skeleton import BodyShape, J, joint_transforms

    shape = BodyShape(height=1.05, arm_length=0.97)
    rng = np.random.default_rng(0)
    T = 50
    pose = np.zeros((T, 55, 3))
    pos, rot = joint_transforms(pose, np.zeros((T, 3)), shape)
    shoulder = pos[:, J["right_shoulder"]]
    target = shoulder + rng.normal(0, 1, (T, 3)) * [0.1, 0.15, 0.1] + [0.15, -0.15, 0.25]
    hand = Rotation.random(T, random_state=1).as_matrix()
    sh, el, wr = arm_ik(shoulder, rot[:, J["right_collar"]], target, hand, shape, "right")
    pose[:, J["right_shoulder"]], pose[:, J["right_elbow"]], pose[:, J["right_wrist"]] = sh, el, wr
    pos2, rot2 = joint_transforms(pose, np.zeros((T, 3)), shape)
    palm = pos2[:, J["right_wrist"]] + rot2[:, J["right_wrist"]] @ palm_offset(shape, "right")
    np.testing.assert_allclose(rot2[:, J["right_wrist"]], hand, atol=1e-6)  # orientation is always met
    reach = np.linalg.norm(pos[0, J["right_elbow"]] - shoulder[0]) + np.linalg.norm(
        pos[0, J["right_wrist"]] - pos[0, J["right_elbow"]]
    )
    wrist_target = target - hand @ palm_offset(shape, "right")
    dist = np.linalg.norm(wrist_target - shoulder, axis=1)
    ok = dist < reach - 1e-3
    assert ok.sum() > 30 and (~ok).sum() > 0  # the random targets include out-of-reach ones
    np.testing.assert_allclose(palm[ok], target[ok], atol=1e-6)
    # out of reach: the arm points straight at the target, as close as it can get
    np.testing.assert_allclose(np.linalg.norm(palm - target, axis=1)[~ok], dist[~ok] - reach, atol=1e-3)


# --- bad params and failures ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"n_glosses": 0}, "corpus.synthetic params: n_glosses must be at least 1"),
        ({"width": -64}, "corpus.synthetic params: width must be at least 1"),
        ({"height": 0}, "height must be at least 1"),
        ({"width": 63}, "must be even"),
        ({"fps": 0}, "fps must be positive"),
        ({"task": "sentences"}, "task 'sentences' is not known"),
        ({"n_unseen_signers": 6}, "n_unseen_signers (6) must be less than n_signers (6)"),
        ({"tokens_per_utterance": (5, 2)}, "tokens_per_utterance"),
        ({"val_fraction": 0.6, "test_fraction": 0.5}, "corpus params: val_fraction and test_fraction"),
        ({"min_train_occurrences": 0}, "corpus params: min_train_occurrences must be at least 1"),
    ],
)
def test_bad_params_fail_with_a_clear_message(overrides, message):
    with pytest.raises(ValueError) as err:
        SyntheticConfig(**overrides)
    assert message in str(err.value)


def test_too_few_utterances_to_cover_the_lexicon_is_refused(tmp_path):
    with pytest.raises(ValueError, match="fewer than n_glosses x min_train_occurrences"):
        generate_corpus(small_config(n_glosses=200, n_utterances=20), tmp_path / "c", workers=1)
    assert not (tmp_path / "c").exists()


def test_a_failure_midway_leaves_the_previous_corpus_intact(small_corpus, tmp_path, monkeypatch):
    cfg, _, _ = small_corpus
    out = tmp_path / "corpus"
    generate_corpus(small_config(n_utterances=12, n_unseen_utterances=2, n_glosses=8), out, workers=1)
    before = (out / "manifest.parquet").read_bytes()
    calls = {"n": 0}
    real = synthetic.build_utterance

    def dies_after_three(plan):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt  # as if the stage were killed
        return real(plan)

    monkeypatch.setattr(synthetic, "build_utterance", dies_after_three)
    with pytest.raises(KeyboardInterrupt):
        generate_corpus(cfg, out, workers=1)
    assert (out / "manifest.parquet").read_bytes() == before  # the old corpus is untouched
    monkeypatch.setattr(synthetic, "build_utterance", real)
    generate_corpus(cfg, out, workers=1)  # and a rerun finishes
    assert len(read_manifest(out)) == cfg.n_utterances + cfg.n_unseen_utterances
    assert not out.with_name("corpus.partial").exists()


def test_paper_scale_vocabularies_plan_without_rendering():
    """The 2000-gloss preset's lexicon and plans (no video) satisfy the same contracts."""
    cfg = SyntheticConfig(n_glosses=2000, n_utterances=3000, n_unseen_utterances=100, min_train_occurrences=2)
    rng = np.random.default_rng(0)
    signers = synthetic.make_signers(cfg, rng)
    lexicon = make_lexicon(cfg.n_glosses, cfg.difficulty.minimal_pair_fraction, rng)
    plans = synthetic.plan_utterances(cfg, signers, rng)
    assert len({s.params() for s in lexicon.signs}) == 2000
    train = np.bincount([t for p in plans if p.split == "train" for t in p.tokens], minlength=2000)
    assert train.min() >= 2
    assert sum(1 for p in plans if p.split == "test_unseen") == 100


def test_train_contains_a_left_handed_signer():
    for seed in range(5):
        signers = synthetic.make_signers(SyntheticConfig(seed=seed), np.random.default_rng([seed, 0]))
        assert any(s.dominant == "left" and s.seen for s in signers)
        assert sum(s.dominant == "left" for s in signers) == 1  # 0.2 x 6 signers


# --- the source registry and the params layout ----------------------------------------------------------------
def _params(**corpus) -> dict:
    """params.yaml's `corpus` section as it ships (a copy), with keys overridden."""
    import yaml

    section = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())["corpus"]
    return section | corpus


def test_the_shipped_params_parse_into_the_default_synthetic_config():
    source, cfg = sources.parse_corpus_params(_params(), seed=1234)
    assert source.name == "synthetic" and source.build is synthetic.build
    assert cfg == SyntheticConfig(seed=1234, fps=15)  # the dataclass defaults are the shipped params


def test_an_unknown_shared_key_is_refused_naming_it_and_the_section():
    with pytest.raises(ValueError, match=r"^corpus params: unknown keys \['val_fracton'\]"):
        sources.parse_corpus_params(_params(val_fracton=0.2), seed=0)


def test_a_synthetic_knob_left_directly_under_corpus_says_where_it_belongs():
    with pytest.raises(ValueError) as err:
        sources.parse_corpus_params(_params(n_glosses=300), seed=0)
    assert "unknown keys ['n_glosses']" in str(err.value)
    assert "set corpus.synthetic.n_glosses" in str(err.value)


def test_an_unknown_key_in_the_source_subsection_is_refused_naming_it_and_the_section():
    with pytest.raises(ValueError, match=r"^corpus\.synthetic params: unknown keys \['n_glosess'\]"):
        sources.parse_corpus_params(_params(synthetic={"n_glosess": 10}), seed=0)
    with pytest.raises(ValueError, match=r"^corpus\.synthetic\.difficulty params: unknown keys \['easy_mode'\]"):
        sources.parse_corpus_params(_params(synthetic={"difficulty": {"easy_mode": True}}), seed=0)
    with pytest.raises(ValueError, match=r"^corpus\.synthetic params: unknown keys \['val_fraction'\]") as err:
        sources.parse_corpus_params(_params(synthetic={"val_fraction": 0.2}), seed=0)  # a shared key, misplaced
    assert "set corpus.val_fraction" in str(err.value)


def test_an_unknown_source_is_refused_listing_the_registered_ones():
    with pytest.raises(ValueError) as err:
        sources.parse_corpus_params(_params(source="asllrp-cloud"), seed=0)
    assert "source 'asllrp-cloud' is not known" in str(err.value)
    assert f"set corpus.source to one of {list(sources.registered_sources())}" in str(err.value)
    assert "'synthetic'" in str(err.value)
    with pytest.raises(ValueError, match=r"unknown keys \['how2sign'\]"):  # nor a subsection for it
        sources.parse_corpus_params(_params(how2sign={"json": "x.json"}), seed=0)


@dataclass(frozen=True)
class ToyConfig(sources.CorpusConfig):
    """A stand-in importer: two utterances of coloured squares."""

    n_frames: int = 8
    size: int = 32


def _toy_build(cfg: ToyConfig, out_dir: Path, workers: int | None) -> dict:
    rows = []
    for i, (split, glosses) in enumerate([("train", "HELLO IX-1p #IF"), ("test", "IX-1p HELLO")]):
        (out_dir / "videos").mkdir(exist_ok=True)
        video = f"videos/toy{i}.mp4"
        writer = cv2.VideoWriter(str(out_dir / video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (cfg.size, cfg.size))
        for t in range(cfg.n_frames):
            writer.write(np.full((cfg.size, cfg.size, 3), (20 * t + 40 * i + cfg.seed) % 256, np.uint8))
        writer.release()
        rows.append({"utt_id": f"toy{i}", "video": video, "glosses": glosses, "split": split, "signer": "p1",
                     "fps": 10.0, "n_frames": cfg.n_frames, "task": "continuous"})  # fmt: skip
    vocab = manifest.train_vocabulary(rows, cfg.min_train_occurrences)
    manifest.write_manifest(rows, out_dir, vocab)
    return manifest.manifest_summary(rows, vocab)


@pytest.fixture
def toy_source(monkeypatch):
    """The toy source registered as `toy` for one test (the registry is restored afterwards)."""
    monkeypatch.setattr(sources, "_REGISTRY", dict(sources.registered_sources()))
    sources.register_source("toy", config=ToyConfig)(_toy_build)
    return sources.get_source("toy")


def test_a_registered_source_builds_through_the_registry_and_writes_the_contract(toy_source, tmp_path):
    section = _params(source="toy", min_train_occurrences=1, toy={"n_frames": 6})  # synthetic's subsection stays
    summary = sources.build_corpus(section, seed=5, out_dir=tmp_path / "corpus")
    m = read_manifest(tmp_path / "corpus")
    assert m["utt_id"].tolist() == ["toy0", "toy1"] and m["split"].tolist() == ["train", "test"]
    assert m["width"].isna().all()  # left out by the source: unknown, not made up
    vocab = Vocab.load(tmp_path / "corpus" / "vocab.json")
    assert vocab.glosses == ("#IF", "HELLO", "IX-1p")  # train counts tie: by name
    cap = cv2.VideoCapture(str(tmp_path / "corpus" / m["video"][1]))
    assert sum(1 for _ in iter(lambda: cap.read()[0], False)) == 6
    assert summary["source"] == "toy" and summary["n_glosses"] == 3
    assert summary["utterances"] == {"train": 1, "val": 0, "test": 1, "test_unseen": 0}
    assert summary["frames"]["test"] == 6 and summary["tokens"] == {"train": 3, "val": 0, "test": 2, "test_unseen": 0}
    assert summary["hours"] == round(12 / 10 / 3600, 4) and summary["signers_seen"] == 1
    resolved = json.loads((tmp_path / "corpus" / "config.json").read_text())
    assert resolved["corpus"] == {"source": "toy", "val_fraction": 0.1, "test_fraction": 0.1,
                                  "min_train_occurrences": 1, "toy": {"n_frames": 6, "size": 32}}  # fmt: skip
    src, cfg = sources.parse_corpus_params(resolved["corpus"], resolved["seed"])
    assert src is toy_source and cfg == ToyConfig(min_train_occurrences=1, n_frames=6, seed=5)
    assert not (tmp_path / "corpus.partial").exists()


def test_glosses_outside_the_selected_vocabulary_are_refused_and_nothing_is_published(toy_source, tmp_path):
    section = {"source": "toy", "min_train_occurrences": 2}  # every train gloss occurs once: none is kept
    with pytest.raises(ValueError, match=r"not in the vocabulary .*corpus\.min_train_occurrences"):
        sources.build_corpus(section, seed=0, out_dir=tmp_path / "corpus")
    assert not (tmp_path / "corpus").exists()


def test_a_source_name_is_registered_once(toy_source):
    def other_build(cfg, out_dir, workers):
        return {}

    with pytest.raises(ValueError, match="'toy' is already registered"):
        sources.register_source("toy", config=ToyConfig)(other_build)
    with pytest.raises(ValueError, match="collides with a shared corpus key"):
        sources.register_source("val_fraction", config=ToyConfig)


def test_prepare_stage_builds_from_a_params_file_and_reports_the_summary(tmp_path):
    import yaml

    from pipeline import prepare

    cfg = small_config(n_utterances=12, n_unseen_utterances=2, n_glosses=8)
    params = {"seed": cfg.seed, "corpus": cfg.to_params("synthetic")}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "data" / "corpus"
    args = ["--params", tmp_path / "params.yaml", "--out", out, "--metrics", tmp_path / "corpus.json"]
    prepare.main([str(a) for a in args] + ["--preview", str(tmp_path / "preview.png"), "--workers", "1"])
    metrics = json.loads((tmp_path / "corpus.json").read_text())
    expected = dataclasses.asdict(generate_corpus(cfg, tmp_path / "again", workers=1))
    assert metrics.keys() == expected.keys()
    assert {k: v for k, v in metrics.items() if k != "generation_seconds"} == {
        k: v for k, v in expected.items() if k != "generation_seconds"
    }
    assert (out / "manifest.parquet").read_bytes() == (tmp_path / "again" / "manifest.parquet").read_bytes()
    assert (tmp_path / "preview.png").stat().st_size > 1000


# --- preview --------------------------------------------------------------------------------------------------
def test_preview_without_ground_truth_spreads_frames_and_labels_them_with_the_glosses(toy_source, tmp_path):
    sources.build_corpus({"source": "toy", "min_train_occurrences": 1, "toy": {"n_frames": 12}}, 0, tmp_path / "c")
    assert not (tmp_path / "c" / "skeleton.zarr").exists()
    shown = make_preview(tmp_path / "c", tmp_path / "preview.png", columns=4)
    assert shown == ["toy0", "toy1"]  # one row per split that has utterances
    image = cv2.imread(str(tmp_path / "preview.png"))
    assert image is not None and image.shape[0] > 100 and image.std() > 5
    picks = preview._even_picks(["A", "B", "C"], n_frames=30, columns=6)
    assert [f for f, _ in picks] == [4, 8, 12, 16, 20, 24]  # evenly spread, the rest frames at the ends left out
    assert [label for _, label in picks] == ["≈ A", "≈ A", "≈ B", "≈ B", "≈ C", "≈ C"]


def test_preview_with_ground_truth_shows_the_middle_of_each_sign(small_corpus, tmp_path):
    _, corpus, _ = small_corpus
    shown = make_preview(corpus, tmp_path / "preview.png", columns=6)
    m = read_manifest(corpus).set_index("utt_id")
    assert [m.loc[u, "split"] for u in shown] == ["train", "val", "test", "test_unseen"]
    token = FrameStore(corpus / "skeleton.zarr").read(shown[0], "token")
    glosses = m.loc[shown[0], "glosses"].split()
    picks = preview._aligned_picks(token, glosses, int(m.loc[shown[0], "n_frames"]), 6)
    assert [label for _, label in picks][: len(glosses)] == glosses[:6]
    assert all(token[f] == k for k, (f, _) in enumerate(picks[: len(glosses)]))
