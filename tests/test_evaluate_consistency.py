"""`evaluate` end to end on a published Stage I model: its metrics are the scores of its own per-utterance table, and
every row's utterance, reference and hypothesis belong together whatever order length-sorted batching decodes in."""

from __future__ import annotations

import pytest
import torch

from pipeline import scoring
from pipeline.checkpoints import save_model
from pipeline.corpus.manifest import read_manifest
from pipeline.data import collate, feature_layout, load_split
from pipeline.decoding import DecodeConfig, ctc_best_path
from pipeline.evaluate import evaluate_pose2gloss
from pipeline.nets.pose2gloss import Pose2Gloss, Pose2GlossConfig
from pipeline.recognition import SPLITS
from pipeline.vocab import Vocab

# best-path CTC decoding of a per-frame network (kernel-1 encoders, no diffusion, no memory encoder): each
# utterance's hypothesis depends on its own frames only, so decoding it alone must give the same glosses
DATA_OPTIONS = {"tracks": None, "frame_stride": 1, "max_frames": 1024}
BEST_PATH = DecodeConfig(strategy="ctc", max_len=64)


@pytest.fixture(scope="module")
def published(features, tmp_path_factory):
    """(corpus, store, published model path, the model) of an untrained per-frame Stage I with a sharp CTC head."""
    corpus, store = features
    layout = feature_layout(store)
    vocab = Vocab.load(corpus / "vocab.json")
    cfg = Pose2GlossConfig(vocab_size=len(vocab), track_names=layout.tracks, track_dims=layout.dims, d_track=16,
                           encoder_kernel=1, unified_dim=32, unet_channels=(8, 16), d_model=32, n_decoder_layers=1,
                           n_decoder_heads=2, n_fusion_heads=2, dropout=0.0, diffusion=False)  # fmt: skip
    torch.manual_seed(0)
    model = Pose2Gloss(cfg).eval()
    with torch.no_grad():
        model.ctc_head.weight.mul_(20)  # clear arg-max margins: batching's rounding cannot flip a frame's gloss
    model.data_options = dict(DATA_OPTIONS)
    path = tmp_path_factory.mktemp("model") / "best"
    save_model(path, model.state_dict(), model.published_config())
    return corpus, store, path, Pose2Gloss.from_checkpoint(path)


def test_metrics_are_the_scores_of_the_per_utterance_table(published):
    corpus, store, path, _ = published
    metrics, table = evaluate_pose2gloss(path, store, corpus, BEST_PATH, batch_size=4)
    manifest = read_manifest(corpus).set_index("utt_id")
    for split in SPLITS:
        rows, m = table[table.split == split], metrics[split]
        refs, hyps = rows.reference.tolist(), rows.hypothesis.tolist()
        assert sorted(rows.utt_id) == sorted(manifest.index[manifest.split == split]) and m["utterances"] == len(rows)
        assert refs == manifest.loc[rows.utt_id, "glosses"].tolist()  # each row's reference is its utterance's
        assert rows.signer.tolist() == manifest.loc[rows.utt_id, "signer"].tolist()
        w = scoring.wer(refs, hyps)
        assert {k: m[k] for k in w} == w
        for k in ("substitutions", "deletions", "insertions"):
            assert rows[k].sum() == m[k]
        assert m["bleu"] == pytest.approx(rows.bleu.mean(), abs=1e-3)  # the table rounds to 3 decimals
        assert m["bleu"] == pytest.approx(scoring.bleu(refs, hyps))
        assert m["best"] == pytest.approx(rows.bleu1.max(), abs=1e-3)
        assert m["corpus_bleu"] == pytest.approx(scoring.corpus_bleu(refs, hyps))
        per_row = [scoring.wer([r], [h])["wer"] for r, h in zip(refs, hyps)]
        assert rows.wer.tolist() == pytest.approx(per_row, abs=1e-3)


def test_each_row_holds_the_hypothesis_of_its_own_utterance_decoded_alone(published):
    corpus, store, path, model = published
    _, table = evaluate_pose2gloss(path, store, corpus, BEST_PATH, batch_size=4)
    vocab = Vocab.load(corpus / "vocab.json")
    for split in SPLITS:
        data = load_split(store, corpus, vocab, split, **DATA_OPTIONS)
        assert sorted(len(u.features) for u in data) != [len(u.features) for u in data]  # batching reorders them
        alone = {}
        for u in data:
            b = collate([u])
            _, logp = model.inference(b["features"], b["track_mask"], b["frame_pad"])
            alone[u.utt_id] = vocab.decode(ctc_best_path(logp, (~b["frame_pad"]).sum(1), BEST_PATH.max_len)[0])
        rows = table[table.split == split]
        assert dict(zip(rows.utt_id, rows.hypothesis)) == alone
        assert len(set(alone.values())) > len(alone) // 2  # hypotheses differ, so a shuffled row would show
