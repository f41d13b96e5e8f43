"""The `asllrp` corpus source: SignStream XML exports (SignStream 2, as the NCSLGR corpus ships; SignStream 3, as the
current ASLLRP corpus does) and the media files they name.

Every `*.xml` under `xml_dir` is read (`pipeline.corpus.signstream`); each utterance becomes one entry: its main
gloss track (conventions kept as annotated), its time span in seconds converted from the file's own time base, its
signer. Its video is the first media file the utterance's document names, found under `media_dir` by that name (or,
when the name carries folders that do not exist there, by its file name alone); the clip is cut at that video's own
frame rate (`pipeline.corpus.clips`). A file that is not a SignStream export, an utterance that cannot be read, a
missing video or times outside it are recorded skips; the rest imports.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.corpus.clips import Span
from pipeline.corpus.importing import Entry, ImportConfig, Skip, import_corpus
from pipeline.corpus.signstream import SignStreamError, read_signstream
from pipeline.corpus.sources import register_source


@dataclass(frozen=True)
class ASLLRPConfig(ImportConfig):
    xml_dir: str = "external/corpus/asllrp/xml"  # SignStream XML exports (searched recursively)
    media_dir: str = "external/corpus/asllrp/media"  # the media files the exports name


def read_asllrp(cfg: ASLLRPConfig) -> tuple[list[Entry], list[Skip]]:
    """The utterances of every export under `xml_dir`, and what could not be read (file or utterance, reason)."""
    xml_dir, media_dir = Path(cfg.xml_dir), Path(cfg.media_dir)
    if not xml_dir.is_dir():
        raise FileNotFoundError(f"corpus.asllrp.xml_dir: no folder at {xml_dir} (the SignStream XML exports)")
    files = sorted(p for p in xml_dir.rglob("*.xml") if not p.is_dir())  # a folder named *.xml: searched, not read
    if not files:
        raise FileNotFoundError(f"corpus.asllrp.xml_dir: no .xml file under {xml_dir}")
    by_name = {p.name: p for p in sorted(media_dir.rglob("*")) if p.is_file()} if media_dir.is_dir() else {}
    entries, skipped = [], []
    for xml in files:
        try:
            utterances, bad = read_signstream(xml)
        except (SignStreamError, OSError) as err:  # not an export, or a file that cannot be read: this file only
            skipped.append((str(xml), f"unreadable XML: {err}"))
            continue
        skipped += [(name, f"unreadable XML element: {reason}") for name, reason in bad]
        for u in utterances:
            if not u.media:
                skipped.append((u.key, "unreadable XML element: the utterance names no media file"))
                continue
            video = media_dir / u.media[0]
            video = video if video.is_file() else by_name.get(Path(u.media[0]).name, video)
            span = Span(u.start_s, u.end_s, "second")
            entries.append(Entry(u.key, video, u.glosses, span, None, u.signer, "continuous", u.translation))
    return entries, skipped


@register_source("asllrp", config=ASLLRPConfig)
def build(cfg: ASLLRPConfig, out_dir: Path, workers: int | None = None) -> dict:
    entries, skipped = read_asllrp(cfg)
    return import_corpus(cfg, entries, skipped, out_dir, workers)
