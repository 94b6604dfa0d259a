"""User text normalised at the service edge."""

from __future__ import annotations

import unicodedata

from core.textnorm import MAX_NAME_CHARS, normalize_name, normalize_text


def test_lone_surrogates_are_replaced_and_pairs_joined() -> None:
    assert normalize_text("bad \ud800 query") == "bad \ufffd query"
    assert normalize_text("tail \udfff") == "tail \ufffd"
    # A pair that arrived as two code units (JSON "\ud83d\ude00") is the real character.
    assert normalize_text("smile \ud83d\ude00") == "smile \U0001F600"
    normalize_text("x\ud800y").encode("utf-8")  # encodable now


def test_control_characters_are_removed_but_layout_kept() -> None:
    assert normalize_text("in\x00voice\x07 42\x1b[31m") == "invoice 42[31m"
    assert normalize_text("line one\nline\ttwo\r\n") == "line one\nline\ttwo"
    assert normalize_text("\x00\x01 ") == ""


def test_nfc_and_length_cap() -> None:
    decomposed = "cafe\u0301"
    assert normalize_text(decomposed) == "café" == unicodedata.normalize("NFC", decomposed)
    assert len(normalize_text("word " * 10_000)) <= 4000
    assert normalize_text("  padded  ") == "padded"
    assert normalize_text("abcdef", max_chars=3) == "abc"


def test_names_are_one_line_and_never_empty() -> None:
    assert normalize_name("shot\n\x00one\ud800.png") == "shot one\ufffd.png"
    assert normalize_name("\x00\x00") == "image"
    assert len(normalize_name("n" * 10_000)) == MAX_NAME_CHARS
