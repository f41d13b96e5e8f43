"""SignStream XML exports (`pipeline.corpus.signstream`): SignStream 2 as the NCSLGR corpus ships it, SignStream 3 as
its own writer lays it out; times on the right base, glosses in time order with their conventions intact, every
unreadable utterance reported by name while the rest is read, and a file that is no SignStream export refused.

The fixtures copy the real structures: the SS2 one is cut from NCSLGR ``ncslgr10l.xml`` (vgel/asl-prosody
``ncslgr-xml/``: same elements, attributes, field ids and names, LEGACY-PATHs, HOLD marks, times in ms with A times
relative to the utterance); the SS3 one follows SignStream 3's ``SSDocument``/``Segment``/``Track`` writers, with
the participant and media names ``XMLConstant`` defines."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.corpus.signstream import SignStreamError, SignStreamUtterance, read_signstream

SS2_CODING_SCHEME = """
<CODING-SCHEME>
<FIELD CONSTRAINT="free-text" ID="16" LABEL="negative" NAME="negative" COLOR="ed181e">
<VALUE ID="2" LABEL="neg" NAME="negation"/>
<VALUE ID="400000" NAME="HOLD"/><VALUE ID="400001" NAME="ONSET"/><VALUE ID="400002" NAME="OFFSET"/>
</FIELD>
<FIELD CONSTRAINT="free-text" ID="10000" LABEL="main gloss" NAME="main gloss">
<VALUE ID="400000" NAME="HOLD"/><VALUE ID="400001" NAME="ONSET"/><VALUE ID="400002" NAME="OFFSET"/>
</FIELD>
<FIELD CONSTRAINT="free-text" ID="20000" LABEL="literal" NAME="literal translation">
<VALUE ID="400000" NAME="HOLD"/><VALUE ID="400001" NAME="ONSET"/><VALUE ID="400002" NAME="OFFSET"/>
</FIELD>
<FIELD CONSTRAINT="free-text" ID="20001" LABEL="english" NAME="English translation">
<VALUE ID="400000" NAME="HOLD"/><VALUE ID="400001" NAME="ONSET"/><VALUE ID="400002" NAME="OFFSET"/>
</FIELD>
<FIELD CONSTRAINT="free-text" ID="10001" LABEL="nd hand gloss" NAME="non-dominant hand gloss">
<VALUE ID="400000" NAME="HOLD"/><VALUE ID="400001" NAME="ONSET"/><VALUE ID="400002" NAME="OFFSET"/>
</FIELD>
</CODING-SCHEME>
"""

SS2_HEAD = f"""<?xml version="1.0" encoding="UTF-8"?>
<SIGNSTREAM-DATABASE DATABASE-VERSION="1.0" SIGNSTREAM-VERSION="2" SOURCE="">
<DISTRIBUTOR>Carol Neidle, American Sign Language Linguistic Research Project, Boston University</DISTRIBUTOR>
<PARTICIPANTS>
<PARTICIPANT AGE="" GENDER="male" ID="0" LABEL="Ben" LANGUAGE="ASL" NAME="Benjamin Bahan">
<BACKGROUND></BACKGROUND>
</PARTICIPANT>
<PARTICIPANT AGE="" GENDER="female" ID="1" LABEL="Norma" LANGUAGE="ASL" NAME="Norma Bowers Tourangeau">
<BACKGROUND></BACKGROUND>
</PARTICIPANT>
</PARTICIPANTS>
{SS2_CODING_SCHEME}
<MEDIA-FILES>
<MEDIA-FILE ID="992" LEGACY-PATH="NCSLGRv2:video files:slave2:ch5-496_117_small_2.mov"/>
<MEDIA-FILE ID="990" LEGACY-PATH="NCSLGRv2:video files:master:ch5-496_117_small_0.mov"/>
<MEDIA-FILE ID="991" LEGACY-PATH="NCSLGRv2:video files:slave1:ch5-496_117_small_1.mov"/>
<MEDIA-FILE ID="655" LEGACY-PATH="NCSLGR:Movies-from-CDs:NCSLGRv2:video files:master:539_219_small_0.mov"/>
<MEDIA-FILE ID="738" LEGACY-PATH="NCSLGRv2:video files:slave2:539_219_small_2.mov"/>
</MEDIA-FILES>
"""

# Utterance 63: signs annotated out of time order, a HOLD mark, a non-dominant hand and a non-manual track, a
# translation; its media refs list the master camera second. Utterance 29 starts 33.033 s into its video.
SS2_UTTERANCES = """<UTTERANCES>
<UTTERANCE E="2066" EXCERPT="fs-JOHN BUY CAR FUTURE^" ID="63" S="0">
<NOTES></NOTES>
<MEDIA-REF ID="992"/>
<MEDIA-REF ID="990"/>
<MEDIA-REF ID="991"/>
<SEGMENT PARTICIPANT-ID="1" PRIMARY="true">
<TRACK FID="10000">
<A E="1000" S="866">CAR</A>
<A E="400" S="266">fs-JOHN</A>
<A E="733" S="633">BUY</A>
<A E="1566" S="1100" VID="400000"/>
<A E="1400" S="1200">FUTURE^NOT</A>
</TRACK>
<TRACK FID="10001">
<A E="1400" S="1200">(1h)NEVER</A>
</TRACK>
<TRACK FID="16">
<A E="1766" S="1200" VID="2"/>
</TRACK>
<TRACK FID="20000">
<A E="2066" S="0">John buy car future not</A>
</TRACK>
<TRACK FID="20001">
<A E="2066" S="0">Is John going to buy a car?  He won't.</A>
</TRACK>
</SEGMENT>
</UTTERANCE>
<UTTERANCE E="35200" EXCERPT="IX-1p #WHAT" ID="29" S="33033">
<NOTES></NOTES>
<MEDIA-REF ID="655"/>
<MEDIA-REF ID="738"/>
<SEGMENT PARTICIPANT-ID="0" PRIMARY="true">
<TRACK FID="20001">
<A E="2167" S="0">What did I say? That's the way it is.</A>
</TRACK>
<TRACK FID="10000">
<A E="300" S="167">IX-1p</A>
<A E="567" S="434">#WHAT</A>
<A E="1034" S="934">  (1h)part:indef  </A>
<A E="1500" S="1234">5"that's the   way it is"</A>
<A E="1800" S="1533">DCL:"long"</A>
</TRACK>
</SEGMENT>
</UTTERANCE>
</UTTERANCES>
</SIGNSTREAM-DATABASE>
"""

SS3_DOCUMENT = """<?xml version="1.0" encoding="UTF-8"?>
<SIGNSTREAM-DATABASE FILENAME="asllrp-demo" SIGNSTREAM-VERSION="3" CODING-SCHEME="ASLLRP">
<DISTRIBUTOR>American Sign Language Linguistic Research Project, Boston University</DISTRIBUTOR>
<PARTICIPANTS>
<PARTICIPANT ID="4" NAME="Lana Cook" LABEL="Lana" GENDER="female" LANGUAGE="ASL"/>
<PARTICIPANT ID="5" NAME="" LABEL="Rachel" GENDER="female" LANGUAGE="ASL"/>
</PARTICIPANTS>
<MEDIA-FILES>
<MEDIA-FILE ID="1" FILENAME="Lana_2012-06-14_scene31-camera1.mov"/>
<MEDIA-FILE ID="2" FILENAME="Rachel_2012-06-28_scene4-camera1.mov"/>
</MEDIA-FILES>
<SEGMENTS>
<SEGMENT EXCERPT="TOMORROW IX-1p GO" S="1500" E="4250" PARTICIPANT-ID="4">
<NOTES>elicited</NOTES>
<MEDIA-REF ID="1"/>
<TRACK NAME="main gloss" FID="7">
<A S="1400" E="1900">GO</A>
<A S="100" E="600">TOMORROW</A>
<A S="700" E="1100">IX-1p</A>
</TRACK>
<TRACK NAME="non-dominant hand gloss" FID="8">
<A S="700" E="1100">IX-1p</A>
</TRACK>
<TRACK NAME="English translation" FID="9">
<A S="0" E="2750">Tomorrow I'll go.</A>
</TRACK>
</SEGMENT>
<SEGMENT ID="12" EXCERPT="fs-JOHN ARRIVE" S="60033" E="62000" PARTICIPANT-ID="5">
<MEDIA-REF ID="2"/>
<TRACK NAME="main gloss" FID="7">
<A S="366" E="866">fs-JOHN</A>
<A S="1100" E="1333">ARRIVE:i</A>
</TRACK>
</SEGMENT>
</SEGMENTS>
</SIGNSTREAM-DATABASE>
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def ss2(tmp_path: Path, utterances: str = SS2_UTTERANCES, name: str = "ncslgr10l.xml") -> Path:
    return write(tmp_path, name, SS2_HEAD + utterances)


def utterance_xml(uid: str, s: str, e: str, tracks: str, media: str = '<MEDIA-REF ID="655"/>') -> str:
    return (
        f'<UTTERANCE E="{e}" ID="{uid}" S="{s}"><NOTES></NOTES>{media}'
        f'<SEGMENT PARTICIPANT-ID="0" PRIMARY="true">{tracks}</SEGMENT></UTTERANCE>'
    )


GLOSS = '<TRACK FID="10000"><A E="400" S="266">fs-JOHN</A><A E="733" S="633">BUY</A></TRACK>'


def by_key(utterances: list[SignStreamUtterance]) -> dict[str, SignStreamUtterance]:
    return {u.key: u for u in utterances}


# --- SignStream 2 (NCSLGR) ---


def test_ss2_reads_every_utterance_keyed_by_file_stem_and_id(tmp_path):
    utterances, skipped = read_signstream(ss2(tmp_path))
    assert skipped == []
    assert [u.key for u in utterances] == ["ncslgr10l-63", "ncslgr10l-29"]


def test_ss2_times_are_milliseconds_of_the_media_file(tmp_path):
    u = by_key(read_signstream(ss2(tmp_path))[0])
    assert (u["ncslgr10l-63"].start_s, u["ncslgr10l-63"].end_s) == (0.0, pytest.approx(2.066))
    assert u["ncslgr10l-29"].start_s == pytest.approx(33.033)
    assert u["ncslgr10l-29"].end_s == pytest.approx(35.2)


def test_ss2_glosses_in_time_order_without_hold_marks_or_other_hands(tmp_path):
    u = by_key(read_signstream(ss2(tmp_path))[0])["ncslgr10l-63"]
    # XML order is CAR fs-JOHN BUY (HOLD) FUTURE^NOT; the non-dominant hand's (1h)NEVER is another track.
    assert u.glosses == ("fs-JOHN", "BUY", "CAR", "FUTURE^NOT")


def test_ss2_gloss_conventions_kept_and_internal_whitespace_joined(tmp_path):
    u = by_key(read_signstream(ss2(tmp_path))[0])["ncslgr10l-29"]
    assert u.glosses == ("IX-1p", "#WHAT", "(1h)part:indef", '5"that\'s_the_way_it_is"', 'DCL:"long"')
    assert len(" ".join(u.glosses).split()) == len(u.glosses)  # one token per sign


def test_ss2_translation_is_the_english_field_not_the_literal_one(tmp_path):
    u = by_key(read_signstream(ss2(tmp_path))[0])
    assert u["ncslgr10l-63"].translation == "Is John going to buy a car?  He won't."
    assert u["ncslgr10l-29"].translation == "What did I say? That's the way it is."


def test_ss2_media_are_file_names_with_the_master_camera_first(tmp_path):
    u = by_key(read_signstream(ss2(tmp_path))[0])
    assert u["ncslgr10l-63"].media == (
        "ch5-496_117_small_0.mov",  # under "master:", listed second in the XML
        "ch5-496_117_small_2.mov",
        "ch5-496_117_small_1.mov",
    )
    assert u["ncslgr10l-29"].media == ("539_219_small_0.mov", "539_219_small_2.mov")


def test_ss2_signer_is_the_segment_participant(tmp_path):
    u = by_key(read_signstream(ss2(tmp_path))[0])
    assert u["ncslgr10l-63"].signer == "Norma Bowers Tourangeau"
    assert u["ncslgr10l-29"].signer == "Benjamin Bahan"


def test_ss2_main_gloss_is_found_by_field_name_not_by_id(tmp_path):
    # Field ids differ between files: here 10000 is the non-dominant hand and 5 the main gloss.
    scheme = (
        '<CODING-SCHEME><FIELD ID="10000" NAME="non-dominant hand gloss" LABEL="nd hand gloss"/>'
        '<FIELD ID="5" NAME="main gloss" LABEL="main gloss"/><FIELD ID="6" NAME="English translation"/></CODING-SCHEME>'
    )
    tracks = (
        '<TRACK FID="10000"><A E="400" S="266">(1h)WRONG</A></TRACK>'
        '<TRACK FID="5"><A E="400" S="266">RIGHT</A></TRACK><TRACK FID="6"><A E="900" S="0">Right.</A></TRACK>'
    )
    path = write(
        tmp_path,
        "renumbered.xml",
        SS2_HEAD.replace(SS2_CODING_SCHEME, scheme)
        + f"<UTTERANCES>{utterance_xml('1', '0', '900', tracks)}</UTTERANCES></SIGNSTREAM-DATABASE>",
    )
    [u], _ = read_signstream(path)
    assert (u.glosses, u.translation) == (("RIGHT",), "Right.")


def test_ss2_reads_the_primary_segment_of_a_two_participant_utterance(tmp_path):
    utt = (
        '<UTTERANCE E="2000" ID="7" S="0"><MEDIA-REF ID="655"/>'
        '<SEGMENT PARTICIPANT-ID="0" PRIMARY="false"><TRACK FID="10000"><A E="300" S="0">YES</A></TRACK></SEGMENT>'
        '<SEGMENT PARTICIPANT-ID="1" PRIMARY="true"><TRACK FID="10000"><A E="300" S="0">NO</A></TRACK></SEGMENT>'
        "</UTTERANCE>"
    )
    [u], _ = read_signstream(ss2(tmp_path, f"<UTTERANCES>{utt}</UTTERANCES></SIGNSTREAM-DATABASE>"))
    assert (u.glosses, u.signer) == (("NO",), "Norma Bowers Tourangeau")


def test_ss2_unreadable_utterances_are_reported_by_name_and_the_rest_read(tmp_path):
    translation_only = '<TRACK FID="20001"><A E="900" S="0">John arrived.</A></TRACK>'
    bad_gloss_time = '<TRACK FID="10000"><A E="400" S="x1">fs-JOHN</A></TRACK>'
    body = "".join(
        [
            utterance_xml("1", "0", "900", GLOSS),
            utterance_xml("2", "0", "900", translation_only),
            utterance_xml("3", "900", "900", GLOSS),
            utterance_xml("4", "1,5", "2000", GLOSS),
            utterance_xml("5", "0", "900", GLOSS, media='<MEDIA-REF ID="404"/>'),
            utterance_xml("6", "0", "900", bad_gloss_time),
            utterance_xml("7", "0", "NaN", GLOSS),
            utterance_xml("1", "0", "900", GLOSS),
        ]
    )
    utterances, skipped = read_signstream(ss2(tmp_path, f"<UTTERANCES>{body}</UTTERANCES></SIGNSTREAM-DATABASE>"))
    assert [u.key for u in utterances] == ["ncslgr10l-1"]
    assert utterances[0].glosses == ("fs-JOHN", "BUY")
    reasons = dict(skipped[:-1])
    assert [name for name, _ in skipped] == [f"ncslgr10l-{i}" for i in (2, 3, 4, 5, 6, 7, 1)]
    assert reasons["ncslgr10l-2"] == "no main-gloss signs"
    assert "not after start" in reasons["ncslgr10l-3"]
    assert "non-numeric S time '1,5'" in reasons["ncslgr10l-4"]
    assert "unknown media reference ID '404'" in reasons["ncslgr10l-5"]
    assert "'fs-JOHN'" in reasons["ncslgr10l-6"] and "non-numeric S time 'x1'" in reasons["ncslgr10l-6"]
    assert "non-numeric E time 'NaN'" in reasons["ncslgr10l-7"]
    assert "duplicate utterance ID '1'" in skipped[-1][1]


def test_ss2_missing_times_and_ids_are_reported(tmp_path):
    body = (
        '<UTTERANCE E="900"><MEDIA-REF ID="655"/><SEGMENT PARTICIPANT-ID="0">' + GLOSS + "</SEGMENT></UTTERANCE>"
        '<UTTERANCE ID="9" E="900"><MEDIA-REF ID="655"/><SEGMENT PARTICIPANT-ID="0">' + GLOSS + "</SEGMENT></UTTERANCE>"
    )
    utterances, skipped = read_signstream(ss2(tmp_path, f"<UTTERANCES>{body}</UTTERANCES></SIGNSTREAM-DATABASE>"))
    assert utterances == []
    assert skipped == [("ncslgr10l-#1", "the utterance has no ID"), ("ncslgr10l-9", "missing S time on <UTTERANCE>")]


# --- SignStream 3 ---


def test_ss3_segments_read_with_keys_times_signer_and_translation(tmp_path):
    utterances, skipped = read_signstream(write(tmp_path, "asllrp-demo.xml", SS3_DOCUMENT))
    assert skipped == []
    first, second = utterances
    assert first == SignStreamUtterance(
        key="asllrp-demo-1",  # SEGMENT has no ID: its 1-based position, as SignStream 3 numbers segments
        media=("Lana_2012-06-14_scene31-camera1.mov",),
        start_s=1.5,
        end_s=4.25,
        glosses=("TOMORROW", "IX-1p", "GO"),
        translation="Tomorrow I'll go.",
        signer="Lana Cook",
    )
    assert (second.key, second.start_s, second.end_s) == ("asllrp-demo-12", pytest.approx(60.033), 62.0)
    assert (second.glosses, second.translation, second.signer) == (("fs-JOHN", "ARRIVE:i"), None, "Rachel")


def test_ss3_version_in_the_ss2_layout_is_read(tmp_path):
    text = (SS2_HEAD + SS2_UTTERANCES).replace('SIGNSTREAM-VERSION="2"', 'SIGNSTREAM-VERSION="3"')
    utterances, skipped = read_signstream(write(tmp_path, "v3.xml", text))
    assert skipped == []
    assert [u.glosses[0] for u in utterances] == ["fs-JOHN", "IX-1p"]


def test_ss3_unreadable_segment_reported_and_the_rest_read(tmp_path):
    text = SS3_DOCUMENT.replace('S="60033" E="62000"', 'S="62000" E="60033"')
    utterances, skipped = read_signstream(write(tmp_path, "asllrp-demo.xml", text))
    assert [u.key for u in utterances] == ["asllrp-demo-1"]
    assert skipped == [("asllrp-demo-12", "end E=60033 ms is not after start S=62000 ms")]


# --- not a SignStream export ---


def test_malformed_xml_is_an_error_naming_the_file(tmp_path):
    path = ss2(tmp_path, SS2_UTTERANCES.replace("</UTTERANCES>", ""))
    with pytest.raises(SignStreamError) as err:
        read_signstream(path)
    assert str(path) in str(err.value) and "not well-formed XML" in str(err.value)


def test_another_root_is_an_error_naming_it(tmp_path):
    path = write(tmp_path, "session.eaf", '<?xml version="1.0"?><ANNOTATION_DOCUMENT><HEADER/></ANNOTATION_DOCUMENT>')
    with pytest.raises(SignStreamError) as err:
        read_signstream(path)
    assert "<ANNOTATION_DOCUMENT> is not a SignStream export" in str(err.value)
    assert isinstance(err.value, ValueError)


def test_unknown_version_and_unknown_layout_are_errors(tmp_path):
    v4_text = (SS2_HEAD + SS2_UTTERANCES).replace('SIGNSTREAM-VERSION="2"', 'SIGNSTREAM-VERSION="4"')
    v4 = write(tmp_path, "v4.xml", v4_text)
    with pytest.raises(SignStreamError, match="SIGNSTREAM-VERSION='4' is not a supported"):
        read_signstream(v4)
    other_text = '<SIGNSTREAM-DATABASE><DATA><SIGNSTREAM-UTTERANCE ID="1"/></DATA></SIGNSTREAM-DATABASE>'
    other = write(tmp_path, "other.xml", other_text)
    with pytest.raises(SignStreamError, match="neither <UTTERANCES>"):
        read_signstream(other)


def test_entity_declarations_are_refused(tmp_path):
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE SIGNSTREAM-DATABASE [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
        "<SIGNSTREAM-DATABASE><UTTERANCES/></SIGNSTREAM-DATABASE>"
    )
    with pytest.raises(SignStreamError, match="declares entities"):
        read_signstream(write(tmp_path, "bomb.xml", bomb))


def test_an_export_without_utterances_is_empty_not_an_error(tmp_path):
    text = '<SIGNSTREAM-DATABASE SIGNSTREAM-VERSION="2"><UTTERANCES/></SIGNSTREAM-DATABASE>'
    path = write(tmp_path, "empty.xml", text)
    assert read_signstream(path) == ([], [])
