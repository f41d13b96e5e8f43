"""Reader of SignStream XML exports: the NCSLGR corpus (SignStream 2) and SignStream 3 files.

What is supported, and where each fact comes from
-------------------------------------------------

Both versions share one root, ``<SIGNSTREAM-DATABASE SIGNSTREAM-VERSION="2"|"3" ...>``; the version is that
attribute (when it is absent, the layout below decides: ``UTTERANCES`` -> 2, ``SEGMENTS`` -> 3). Any other root, an
unknown version, no ``UTTERANCES``/``SEGMENTS`` container, XML that does not parse, or one that declares entities is a
`SignStreamError`.

SignStream 2 (NCSLGR ``ncslgr-xml/*.xml``)::

    <SIGNSTREAM-DATABASE SIGNSTREAM-VERSION="2" DATABASE-VERSION=".." SOURCE="..">
      <PARTICIPANTS><PARTICIPANT ID="0" NAME="Benjamin Bahan" LABEL="Ben" .../></PARTICIPANTS>
      <CODING-SCHEME>
        <FIELD ID="10000" NAME="main gloss" LABEL="main gloss"> <VALUE ID="400000" NAME="HOLD"/> ...</FIELD>
        <FIELD ID="10001" NAME="non-dominant hand gloss" .../>  <FIELD ID="20001" NAME="English translation" .../>
      </CODING-SCHEME>
      <MEDIA-FILES><MEDIA-FILE ID="990" LEGACY-PATH="NCSLGRv2:video files:master:ch5-496_117_small_0.mov"/>
      <UTTERANCES>
        <UTTERANCE ID="63" S="0" E="2066" EXCERPT="..">  <MEDIA-REF ID="992"/> <MEDIA-REF ID="990"/> ...
          <SEGMENT PARTICIPANT-ID="1" PRIMARY="true">
            <TRACK FID="10000"> <A S="266" E="400">fs-JOHN</A> <A S="1100" E="1566" VID="400000"/> ...</TRACK>
            <TRACK FID="20001"> <A S="0" E="2066">Is John going to buy a car?  He won't.</A> </TRACK>

- Times are milliseconds. UTTERANCE ``S``/``E`` are positions in the media file; ``A`` ``S``/``E`` are offsets from
  the utterance's ``S`` (used here only to order the signs). SignStream's own SS2 importer converts QuickTime time
  values with ``value * 1000 / unitsPerSecond`` (``SS2MediaRef.convertValueToMilliseconds``, called from
  ``readTimePoint``) and subtracts the utterance start from annotation times; Vogler's reference parser documents
  ``(start, end) ... in milliseconds`` and adds the utterance start to each token (``dom.py``
  ``Utterance.get_timecodes``, ``Token.__init__``, ``_make_slice``: ``ms / 1000 * fps``). ``MEDIA-FILE`` carries no
  frame rate or time scale (``SS2MediaRef.toXMLNode`` writes ``ID`` and ``LEGACY-PATH`` only). One public notebook
  (``ncslgr`` exploration in a segmentation repository, "timescale is 2000 units per second", measured against a
  split video) disagrees; it is not followed: the values are multiples of 33.3 ms, one frame at 30 fps (e.g.
  ``<A S="1167" E="1200">IX-1p:i</A>`` in ``ncslgr10l.xml``), which at 2000 units/s would be half-frame signs.
- The main gloss and translation tracks are found by the file's own field names ("main gloss", "English
  translation"), not by id, because field ids differ between files; the ids 10000 / 20001 (used by every NCSLGR
  file read) are the fallback only for a track whose field is named nowhere.
- A main-gloss ``A`` with text is a sign. One without text points (``VID``) at a coding-scheme value; the only
  values of the main-gloss field are HOLD / ONSET / OFFSET, phase marks of the sign before (SignStream's importer
  turns a held gloss into ``HOLD`` starting where the previous sign ends), so they are not signs and are dropped.
- Media: ``LEGACY-PATH`` is a classic-Mac path with ``:`` separators; its last component is the file name, as
  Vogler's parser (``macpath.split``) and the NCSLGR video index ("Video file name in XML file") give it. The file
  under a ``master`` folder (camera 0, the front view) comes first; the slaves keep their XML order.
- An utterance may hold several ``SEGMENT`` elements (one per participant); the ``PRIMARY`` one (``PRIMARY`` absent
  or not "false") is read, and its ``PARTICIPANT-ID`` names the signer (``PARTICIPANT`` ``NAME``, else ``LABEL``,
  else the id itself).

SignStream 3::

    <SIGNSTREAM-DATABASE SIGNSTREAM-VERSION="3" FILENAME=".." CODING-SCHEME="..">
      <SEGMENTS>
        <SEGMENT EXCERPT=".." S="1500" E="4250" [PRIMARY="false"] [PARTICIPANT-ID=".."]> [<MEDIA-REF ID=".."/>]
          <TRACK NAME="main gloss" FID=".."> <A S=".." E="..">IX-1p</A> | <A S=".." E=".." VID=".."/> </TRACK>

- This is what SignStream 3's own Java source writes and reads (Boston University, J. Boyd, 2002-03:
  ``signstream.application.SSDocument`` (``SIGNSTREAM-VERSION`` "3", ``SEGMENTS``), ``signstream.transcript.Segment``
  (``EXCERPT``, ``S``, ``E``, ``PRIMARY``) and ``Track`` (``NAME`` = field name, ``FID``, ``A`` with ``S``/``E`` and
  ``VID`` or text), ``signstream.utility.XMLConstant``), as stored in the public code index (its repository is not
  named there). Its times are the SS2 importer's milliseconds, copied unchanged. The names of the elements that
  source leaves commented out (participant, media refs) are taken from ``XMLConstant`` (``PARTICIPANT-ID``,
  ``PARTICIPANTS``/``PARTICIPANT``, ``MEDIA-FILES``/``MEDIA-FILE`` with ``FILENAME``, ``MEDIA-REF``); a media file's
  name is its ``FILENAME`` as written, else the last component of ``LEGACY-PATH``. A ``SEGMENT`` has no id there:
  the key uses its ``ID`` when present, else its 1-based position, as ``SSDocument`` numbers segments. Every segment
  is read (a non-primary one is another participant of a split utterance, with its own signs).
- A version-3 file in the SignStream 2 layout (``UTTERANCES``) is read as above, because Vogler's parser reads the
  same UTTERANCE/SEGMENT/TRACK/A elements while also admitting SS3-era ones (``CODING-SCHEMES``, ``TEMPLATES``,
  ``DEFAULT-SEGMENT``, ...); that a real version-3 file uses this layout is an inference, not confirmed.
- NOT confirmed: the layout of the current ASLLRP SignStream 3 corpus (DAI 2 downloads, account required) appears in
  no public source found. No ``FRAME-RATE`` attribute, ``MANUALS``/``SIGN`` or ``UTTERANCE START-TIME`` element was
  found anywhere; one unverified description ("built before the data arrived":
  BhuwanJoshi-01/SEAM-Sign-language-Emotion-Aware-Multimodal-framework ``src/seam/data/signstream.py``,
  ``DATA/SIGNSTREAM-UTTERANCE/SEGMENT-TIER/STATEMENT-FIELD``) is not supported. A file in a layout other than the
  two above raises `SignStreamError` naming what is missing, rather than being guessed at.

Sources: vgel/asl-prosody ``ncslgr-xml/ncslgr10l.xml``, ``ncslgr-xml/accident.xml`` (real NCSLGR exports) and
``signstream-xmlparser/analysis/signstream/__init__.py``, ``dom.py``, ``test/test_signstream.py`` (Christian
Vogler's parser, distributed at https://www.bu.edu/asllrp/ncslgr-for-download/signstream-xmlparser.zip); SignStream
Java source as above (``SS2MediaRef``, the SS2 database reader's ``readTimePoint``/``readGlossTrackData``/
``toXMLNode``, ``SSDocument``, ``Segment``, ``Track``, ``XMLConstant``).

Reading is safe: XML that declares entities is refused before ElementTree builds the tree, and ElementTree never
fetches external entities or DTDs.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers import expat

ROOT = "SIGNSTREAM-DATABASE"
VERSIONS = ("2", "3")
MAIN_GLOSS = ("main gloss", "10000")  # (field name, the NCSLGR field id used only when no name is given)
TRANSLATION = ("english translation", "20001")
PHASE_MARKS = frozenset({"HOLD", "ONSET", "OFFSET"})  # main-gloss values that mark a phase of a sign, not a sign
MS_PER_S = 1000.0


@dataclass(frozen=True)
class SignStreamUtterance:
    key: str  # "<xml file stem>-<utterance id>", unique per file
    media: tuple[str, ...]  # media file names as the document names them, the main (master) camera first
    start_s: float  # seconds from the start of the media file
    end_s: float  # > start_s
    glosses: tuple[str, ...]  # main (dominant hand) gloss track in time order, conventions intact
    translation: str | None
    signer: str | None


class SignStreamError(ValueError):
    """The file is not a readable SignStream export (the message names the file and the reason)."""


class _Unreadable(Exception):
    """One utterance could not be read; its message is the reason recorded in `skipped`."""


@dataclass
class _Document:
    """What utterances refer to by id: field names and values, participants, media files."""

    fields: dict[str, set[str]] = field(default_factory=dict)  # field id -> lower-cased NAME and LABEL
    values: dict[tuple[str, str], str] = field(default_factory=dict)  # (field id, value id) -> value NAME
    participants: dict[str, str] = field(default_factory=dict)  # participant id -> NAME (else LABEL)
    media: dict[str, tuple[str, bool]] = field(default_factory=dict)  # media id -> (file name, main camera)


def read_signstream(path: str | os.PathLike) -> tuple[list[SignStreamUtterance], list[tuple[str, str]]]:
    """The utterances of one SignStream export, and `skipped` = [(name, reason)] for each one that could not be
    read (no main-gloss signs, end <= start, missing or non-numeric times, unknown media reference, ...). A file that
    is not a SignStream export (malformed XML, another root, unknown version or layout) raises `SignStreamError`."""
    path = Path(path)
    root = _parse(path)
    doc = _document(root)
    utterances: list[SignStreamUtterance] = []
    skipped: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, uid, span, segment, media_parent in _units(path, root):
        try:
            if uid is None:
                raise _Unreadable("the utterance has no ID")
            if name in seen:
                raise _Unreadable(f"duplicate utterance ID {uid!r}")
            seen.add(name)
            utterances.append(_read_unit(doc, name, span, segment, media_parent))
        except _Unreadable as err:
            skipped.append((name, str(err)))
    return utterances, skipped


def _parse(path: Path) -> ET.Element:
    """The root of a SignStream export, or `SignStreamError`. Entity declarations are refused first (a pre-pass with
    expat) because ElementTree would expand internal ones (entity-expansion bombs); external ones it never fetches."""
    data = path.read_bytes()
    check = expat.ParserCreate()
    check.EntityDeclHandler = _refuse_entities
    try:
        check.Parse(data, True)
        root = ET.fromstring(data)
    except (expat.ExpatError, ET.ParseError) as err:
        raise SignStreamError(f"{path}: not well-formed XML ({err})") from err
    except _EntityDeclared as err:
        raise SignStreamError(f"{path}: the XML declares entities ({err}); SignStream exports never do") from err
    if root.tag != ROOT:
        raise SignStreamError(f"{path}: root element <{root.tag}> is not a SignStream export (expected <{ROOT}>)")
    version = root.get("SIGNSTREAM-VERSION")
    if version is not None and version.strip() not in VERSIONS:
        raise SignStreamError(f"{path}: SIGNSTREAM-VERSION={version!r} is not a supported SignStream version (2 or 3)")
    return root


class _EntityDeclared(Exception):
    pass


def _refuse_entities(name: str, *_: object) -> None:
    raise _EntityDeclared(f"entity {name!r}")


def _units(path: Path, root: ET.Element):
    """(name, id, element holding S/E, SEGMENT with the tracks, element holding MEDIA-REFs) per utterance, for either
    layout: SignStream 2's UTTERANCES/UTTERANCE (its primary SEGMENT), SignStream 3's SEGMENTS/SEGMENT."""
    utterances, segments = root.find("UTTERANCES"), root.find("SEGMENTS")
    if utterances is not None:
        for i, utt in enumerate(utterances.findall("UTTERANCE"), 1):
            uid = (utt.get("ID") or "").strip() or None
            yield f"{path.stem}-{uid if uid else f'#{i}'}", uid, utt, _primary_segment(utt), utt
    elif segments is not None:
        for i, seg in enumerate(segments.findall("SEGMENT"), 1):
            uid = (seg.get("ID") or "").strip() or str(i)  # SignStream 3 numbers segments 1.. and writes no id
            yield f"{path.stem}-{uid}", uid, seg, seg, seg
    else:
        raise SignStreamError(
            f"{path}: <{ROOT}> has neither <UTTERANCES> (SignStream 2 layout) nor <SEGMENTS> (SignStream 3 layout)"
        )


def _primary_segment(utterance: ET.Element) -> ET.Element | None:
    # One SEGMENT per participant; PRIMARY is "true" or absent on the primary one (Segment.fromXMLNode's default).
    segments = utterance.findall("SEGMENT")
    primary = [s for s in segments if (s.get("PRIMARY") or "true").strip().lower() != "false"]
    return (primary or segments or [None])[0]


def _document(root: ET.Element) -> _Document:
    doc = _Document()
    for f in root.iter("FIELD"):
        fid = (f.get("ID") or "").strip()
        doc.fields[fid] = {n.strip().lower() for n in (f.get("NAME"), f.get("LABEL")) if n and n.strip()}
        for v in f.findall("VALUE"):
            doc.values[(fid, (v.get("ID") or "").strip())] = (v.get("NAME") or "").strip()
    for p in root.iter("PARTICIPANT"):
        name = (p.get("NAME") or "").strip() or (p.get("LABEL") or "").strip()
        doc.participants[(p.get("ID") or "").strip()] = name
    for m in root.iter("MEDIA-FILE"):
        legacy = (m.get("LEGACY-PATH") or "").strip()
        folders = legacy.split(":")[:-1]
        name = (m.get("FILENAME") or "").strip() or legacy.split(":")[-1].strip()
        doc.media[(m.get("ID") or "").strip()] = (name, any(f.strip().lower().startswith("master") for f in folders))
    return doc


def _read_unit(
    doc: _Document, name: str, span: ET.Element, segment: ET.Element | None, media_parent: ET.Element
) -> SignStreamUtterance:
    start, end = _time(span, "S"), _time(span, "E")
    if start < 0:
        raise _Unreadable(f"start S={start:g} ms is before the media file begins")
    if end <= start:
        raise _Unreadable(f"end E={end:g} ms is not after start S={start:g} ms")
    media = _media(doc, media_parent)
    if segment is None:
        raise _Unreadable("the utterance has no SEGMENT (no annotation tracks)")
    tracks = {role: [t for t in segment.findall("TRACK") if _role(doc, t) == role] for role in ("gloss", "text")}
    # Time order, not XML order (annotators may add a sign late); the sort is stable, so ties keep XML order.
    signs = sorted((a for t in tracks["gloss"] for a in _annotations(doc, t)), key=lambda a: a[0])
    if not signs:
        raise _Unreadable("no main-gloss signs")
    # A gloss is one token of a space-separated gloss string, so internal whitespace becomes "_".
    glosses = tuple("_".join(text.split()) for _, text in signs)
    texts = [text for _, text in sorted((a for t in tracks["text"] for a in _annotations(doc, t)), key=lambda a: a[0])]
    pid = (segment.get("PARTICIPANT-ID") or "").strip()
    return SignStreamUtterance(
        key=name,
        media=media,
        start_s=start / MS_PER_S,
        end_s=end / MS_PER_S,
        glosses=glosses,
        translation=" ".join(texts) or None,
        signer=(doc.participants.get(pid) or pid) if pid else None,
    )


def _time(element: ET.Element, attribute: str) -> float:
    """A time attribute in milliseconds; missing, non-numeric or non-finite is unreadable."""
    raw = element.get(attribute)
    if raw is None or not raw.strip():
        raise _Unreadable(f"missing {attribute} time on <{element.tag}>")
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise _Unreadable(f"non-numeric {attribute} time {raw!r} on <{element.tag}>")
    return value


def _media(doc: _Document, parent: ET.Element) -> tuple[str, ...]:
    """The media file names the MEDIA-REFs point at: the master camera first, then XML order, no repeats."""
    refs = []
    for ref in parent.findall("MEDIA-REF"):
        mid = (ref.get("ID") or "").strip()
        if mid not in doc.media:
            raise _Unreadable(f"unknown media reference ID {mid!r} (no such MEDIA-FILE)")
        if not doc.media[mid][0]:
            raise _Unreadable(f"MEDIA-FILE ID {mid!r} names no file")
        refs.append(doc.media[mid])
    names = [name for name, _ in sorted(refs, key=lambda m: not m[1])]  # stable: XML order among equals
    return tuple(dict.fromkeys(names))


def _role(doc: _Document, track: ET.Element) -> str | None:
    """'gloss' for the main-gloss track, 'text' for the English translation, else None. The file's own names (the
    track's NAME, its field's NAME / LABEL) decide; the NCSLGR ids only when the field is named nowhere."""
    fid = (track.get("FID") or "").strip()
    names = set(doc.fields.get(fid, set()))
    if (track.get("NAME") or "").strip():
        names.add(track.get("NAME", "").strip().lower())
    for role, (label, fallback_id) in (("gloss", MAIN_GLOSS), ("text", TRANSLATION)):
        if label in names or (not names and fid == fallback_id):
            return role
    return None


def _annotations(doc: _Document, track: ET.Element) -> list[tuple[float, str]]:
    """(start offset in ms, text) per annotation in XML order. Text is the A's own text, else the name of the value
    its VID points at; phase marks (HOLD / ONSET / OFFSET) and empty placeholders are not annotations."""
    fid = (track.get("FID") or "").strip()
    out = []
    for a in track.findall("A"):
        text = (a.text or "").strip() or doc.values.get((fid, (a.get("VID") or "").strip()), "")
        if not text or text in PHASE_MARKS:
            continue
        try:
            start, end = _time(a, "S"), _time(a, "E")
        except _Unreadable as err:
            raise _Unreadable(f"annotation {text!r}: {err}") from None
        if end < start:
            raise _Unreadable(f"annotation {text!r}: end E={end:g} ms is before start S={start:g} ms")
        out.append((start, text))
    return out
