"""What every importer of a real corpus shares: its entries, the vocabulary selection, the split, the clips and the
report of every entry skipped.

A source parses its files into `Entry`s (and `(name, reason)` skips for what it could not read); `import_corpus`
does the rest, the same way for every source:

1. vocabulary: the glosses that occur at least `corpus.min_train_occurrences` times in train, the `vocab_size`
   most frequent of them when set (the paper's 100 / 300 / 1000 / 2000 settings), most frequent first; an entry
   with a gloss outside it is skipped ("glosses not in the vocabulary"), so test never holds a gloss unseen in train,
   and so is one with a gloss spelled as a special token (`<unk>`, `<pad>`, ...), which no vocabulary can hold;
2. split, for a source without its own: by signer when every entry names one and there are at least three
   (`split_by_signer`): whole signers go to test, then val, until each holds its share of the utterances, so test
   signers are never seen in training; otherwise utterances at random (seeded by `seed`);
3. clips: each entry's span of its video cut into `videos/<utt_id><ext>` (`pipeline.corpus.clips`), in parallel;
   a missing or unreadable video, or a span outside it, skips the entry;
4. `skipped.csv` (entry, reason) in the corpus folder, and the counts per reason in the summary.
"""

from __future__ import annotations

import csv
import dataclasses
import re
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline.corpus import manifest
from pipeline.corpus.clips import MissingVideoError, Span, SpanError, VariableFrameRateError, cut_clip
from pipeline.corpus.sources import CorpusConfig
from pipeline.videoio import VideoError
from pipeline.vocab import SPECIAL_TOKENS, Vocab

SKIPPED_FILE = "skipped.csv"
MIN_SIGNERS_FOR_SPLIT = 3


@dataclass(frozen=True)
class ImportConfig(CorpusConfig):
    """The knobs every importer of a real corpus has (in its own `corpus.<source>` subsection)."""

    vocab_size: int | None = None  # keep the N most frequent train glosses (null: all that occur often enough)
    split_by_signer: bool = True  # without a split of the source's own: whole signers per split when possible

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.vocab_size is not None and (isinstance(self.vocab_size, bool) or int(self.vocab_size) < 1):
            raise ValueError(f"corpus params: vocab_size must be null or a positive number, got {self.vocab_size!r}")


@dataclass(frozen=True)
class Entry:
    """One utterance as a source found it. `name` says where it came from (file and id) in the skip report."""

    name: str
    media: Path  # the source video (or the .pose file of the `pose` source)
    glosses: tuple[str, ...]
    span: Span = field(default_factory=Span)
    split: str | None = None  # the source's own split, or None: `import_corpus` assigns one
    signer: str | None = None
    task: str = "continuous"  # or "isolated"
    translation: str | None = None  # the spoken-language translation, when the source has one
    utt_id: str | None = None  # what to call the utterance (made file-name safe; numbered when taken); None: `name`


Skip = tuple[str, str]  # (entry name, reason)
MediaFn = Callable[[Entry, Path, str], dict]  # (entry, corpus folder, utt_id) -> the manifest row's media columns


def utt_id_of(name: str) -> str:
    """A file-name-safe utterance id from an entry's name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "utt"


def select_vocabulary(entries: Sequence[Entry], cfg: ImportConfig) -> Vocab:
    """The train glosses seen at least `min_train_occurrences` times, the `vocab_size` most frequent when set."""
    rows = [{"split": e.split, "glosses": " ".join(e.glosses)} for e in entries]
    vocab = manifest.train_vocabulary(rows, cfg.min_train_occurrences)
    return Vocab(vocab.glosses[: cfg.vocab_size]) if cfg.vocab_size else vocab


def assign_splits(entries: list[Entry], cfg: ImportConfig) -> tuple[list[Entry], str]:
    """Entries with a split each (an entry's own split is kept; the others are assigned), and how they were made."""
    todo = [k for k, e in enumerate(entries) if e.split is None]
    if not todo:
        return entries, "the source's own"
    rng = np.random.default_rng(cfg.seed)
    free = [entries[k] for k in todo]
    signers = sorted({e.signer for e in free if e.signer})
    if cfg.split_by_signer and len(signers) >= MIN_SIGNERS_FOR_SPLIT and all(e.signer for e in free):
        splits, how = _split_signers(free, signers, cfg, rng), "by signer"
    else:
        draw = rng.random(len(free))
        val_end = cfg.test_fraction + cfg.val_fraction
        splits = [("test" if d < cfg.test_fraction else "val" if d < val_end else "train") for d in draw]
        how = "random"
    out = list(entries)
    for k, split in zip(todo, splits):
        out[k] = _with_split(entries[k], split)
    return out, how if len(todo) == len(entries) else f"the source's own, the rest {how}"


def _split_signers(entries: list[Entry], signers: list[str], cfg: ImportConfig, rng: np.random.Generator) -> list[str]:
    """Whole signers, in a seeded order, to test then val until each holds its share; one signer stays in train."""
    counts = Counter(e.signer for e in entries)
    order = [signers[i] for i in rng.permutation(len(signers))]
    chosen, taken = {}, 0
    for split, share in (("test", cfg.test_fraction), ("val", cfg.val_fraction)):
        got = 0
        while len(order) - taken > 1 and got < share * len(entries):
            chosen[order[taken]] = split
            got += counts[order[taken]]
            taken += 1
    return [chosen.get(e.signer, "train") for e in entries]


def _with_split(e: Entry, split: str) -> Entry:
    return dataclasses.replace(e, split=split)


def cut_media(entry: Entry, corpus_dir: Path, utt_id: str) -> dict:
    """The default `MediaFn`: the entry's clip cut from its video into `videos/`; its manifest columns."""
    video = Path("videos") / f"{utt_id}{entry.media.suffix.lower() if entry.span.whole else '.mp4'}"
    info = cut_clip(entry.media, corpus_dir / video, entry.span)
    return {"video": str(video), "fps": info.fps, "n_frames": info.n_frames, "width": info.width,
            "height": info.height}  # fmt: skip


def import_corpus(
    cfg: ImportConfig, entries: list[Entry], skipped: list[Skip], out_dir: Path, workers: int | None,
    media: MediaFn = cut_media,
) -> dict:  # fmt: skip
    """Write the corpus of `entries` into `out_dir` (see the module docstring); returns the `prepare` summary."""
    skipped = list(skipped)
    entries = _without_special_tokens(entries, skipped)
    entries, how = assign_splits(entries, cfg)
    vocab = select_vocabulary(entries, cfg)
    kept = []
    for e in entries:
        if oov := [g for g in e.glosses if g not in vocab]:
            skipped.append((e.name, f"glosses not in the vocabulary: {' '.join(oov)}"))
        else:
            kept.append(e)
    rows = _media_rows(kept, out_dir, workers, media, skipped)
    if not rows:
        _write_skipped(out_dir, skipped)
        raise ValueError(f"no entry of the corpus could be imported ({len(skipped)} skipped; the first: {skipped[:3]})")
    manifest.write_manifest(rows, out_dir, vocab)
    _write_skipped(out_dir, skipped)
    reasons = Counter(reason.split(":")[0] for _, reason in skipped)
    return manifest.manifest_summary(rows, vocab) | {
        "split": how,
        "skipped": len(skipped),
        "skipped_by_reason": dict(sorted(reasons.items())),
    }


def _without_special_tokens(entries: list[Entry], skipped: list[Skip]) -> list[Entry]:
    """The entries none of whose glosses is spelled as one of the vocabulary's special tokens (`<unk>`, ...): such a
    gloss cannot be in a vocabulary, so one annotation placeholder would otherwise stop the whole import."""
    kept = []
    for e in entries:
        if special := [g for g in e.glosses if g in SPECIAL_TOKENS]:
            skipped.append((e.name, f"glosses spelled as signx's special tokens: {' '.join(special)}"))
        else:
            kept.append(e)
    return kept


def _media_rows(
    entries: list[Entry], out_dir: Path, workers: int | None, media: MediaFn, skipped: list[Skip]
) -> list[dict]:
    """Manifest rows of the entries whose media could be brought in (in parallel: decoding releases the GIL)."""
    ids = _unique_ids(entries)
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)

    def one(k: int) -> dict | str:
        try:
            return media(entries[k], out_dir, ids[k])
        except (OSError, ValueError) as err:  # unreadable, missing or too short: this entry only
            return f"{skip_kind(err)}: {err}"

    rows = []
    with ThreadPoolExecutor(max_workers=workers or None) as pool:
        results = tqdm(
            pool.map(one, range(len(entries))), total=len(entries), desc="import", unit="utt", mininterval=2.0
        )
        for e, utt_id, got in zip(entries, ids, results):
            if isinstance(got, str):
                skipped.append((e.name, got))
                continue
            rows.append({"utt_id": utt_id, "glosses": " ".join(e.glosses), "split": e.split, "signer": e.signer or "",
                         "task": e.task, "translation": e.translation or "", **got})  # fmt: skip
    return rows


def skip_kind(err: Exception) -> str:
    """The reason an entry's media could not be brought in, in the words the skip report counts."""
    for kind, cls in (("missing video", MissingVideoError), ("times outside the video", SpanError),
                      ("variable frame rate", VariableFrameRateError), ("unreadable video", VideoError)):  # fmt: skip
        if isinstance(err, cls):
            return kind
    return "missing file" if isinstance(err, FileNotFoundError) else "unreadable file"


def _unique_ids(entries: list[Entry]) -> list[str]:
    """An utterance id per entry, from its name, numbered when two names make the same id."""
    ids, seen = [], Counter()
    for e in entries:
        base = utt_id_of(e.utt_id or e.name)
        seen[base] += 1
        ids.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return ids


def _write_skipped(out_dir: Path, skipped: list[Skip]) -> None:
    with open(out_dir / SKIPPED_FILE, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["entry", "reason"])
        writer.writerows(skipped)
