"""`pixrag migrate --to CONFIG`: copy an index elsewhere without re-embedding, safely re-run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.cli import main
from tests.cli.helpers import write_images
from tests.corpus import TXT


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    rc = main(list(argv))
    out, _ = capsys.readouterr()
    return rc, json.loads(out)


def test_migrate_copies_everything_and_can_be_rerun(
        tmp_path: Path, tiny_clip: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    docs = tmp_path / "docs"
    images = write_images(docs, 3)
    (docs / "notes.txt").write_text(TXT, encoding="utf-8")
    for n in (1, 2):  # more passages than one page of the copy
        (docs / f"memo{n}.md").write_text(f"Memo {n}: the quarterly budget review moved to "
                                          f"room {n}0{n}.\n", encoding="utf-8")
    monkeypatch.setenv("PIXRAG_DATA_DIR", str(tmp_path / "old"))
    monkeypatch.setenv("PIXRAG_ANSWER__PROVIDER", "none")
    monkeypatch.setenv("PIXRAG_INDEX__OCR", "false")
    monkeypatch.setenv("PIXRAG_EMBEDDING__MODEL", str(tiny_clip))
    rc, _ = _run(capsys, "index", str(docs), "--space", "team", "--json")
    assert rc == 0
    target = tmp_path / "target.toml"
    target.write_text(f'data_dir = "{tmp_path / "new"}"\n'
                      f'[embedding]\nmodel = "{tiny_clip}"\n[index]\nocr = false\n'
                      '[answer]\nprovider = "none"\n', encoding="utf-8")
    # Pages of two: vectors and passages are copied a page at a time, never all at once.
    monkeypatch.setattr("core.migrate.BATCH", 2)
    for _ in range(2):  # a second run changes nothing and still verifies
        rc, report = _run(capsys, "migrate", "--to", str(target), "--json")
        assert rc == 0 and report["ok"], report
        assert report["keyword_rows"]["source"] == report["keyword_rows"]["target"] > 2
        assert report["vectors"]["text"]["source"] == report["vectors"]["text"]["target"] > 2
        assert report["items"] == {"source": 6, "target": 6}
        assert report["vectors"]["clip"] == {"source": 3, "target": 3}
        assert report["originals"]["source"] == report["originals"]["target"] == 6
    # The target answers on its own.
    monkeypatch.setenv("PIXRAG_DATA_DIR", str(tmp_path / "new"))
    rc, doc = _run(capsys, "similar", str(images[1]), "--space", "team", "--json")
    assert doc["results"][0]["source"] == str(images[1].resolve())
    rc, doc = _run(capsys, "search", "office", "Berlin", "--space", "team", "--json")
    assert doc["results"][0]["source"] == str((docs / "notes.txt").resolve())
    rc, doc = _run(capsys, "check", "--json")
    assert rc == 0 and doc["ok"], doc
    rc, doc = _run(capsys, "index", str(docs), "--space", "team", "--json")
    assert doc["indexed"] == [] and len(doc["skipped"]) == 6  # file marks came along
