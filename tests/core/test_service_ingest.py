"""Indexing odd, broken and hostile files through the real service; re-index idempotence."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from pathlib import Path

from core.app import open_service
from core.config import Secrets
from core.types import Scope
from tests import corpus
from tests.cli.helpers import make_settings, noise_bytes
from tests.corpus import huge_jpeg_bytes, random_bytes, write_corpus

GOOD = {  # corpus key -> kind of the items it must give
    "cmyk_jpeg": "image", "png16": "image", "exif_rotated": "image", "animated_gif": "image",
    "palette_alpha": "image", "la_png": "image", "rgba_png": "image", "one_bit_png": "image",
    "pdf_text": "page", "pdf_scanned": "page", "txt": "chunk", "md": "chunk",
    "txt_utf16": "chunk",
}
BAD = {  # corpus key -> words the failure reason must contain
    "empty": "empty file",
    "truncated_jpeg": "truncated",
    "html_as_jpg": "HTML",
    "zip_as_png": "ZIP",
    "bomb_png": "60000x60000",
    "huge_side": "longest side",
    "random_jpg": "not an image",
    "heic": "HEIC",
    "svg": "SVG",
    "pdf_encrypted": "encrypted",
    "pdf_truncated": "not a valid PDF",
}


async def _counts(svc: object) -> tuple[int, int, int]:
    lib = svc.library  # type: ignore[attr-defined]
    with contextlib.closing(sqlite3.connect(lib.keyword.path)) as db:
        docs = db.execute("SELECT COUNT(*) FROM docs").fetchone()[0]
    # Image vectors per item (long images also carry "<id>#t<n>" tile vectors).
    store = await lib.vectors()
    clip_items = [r.id for r in store.records("clip")]
    whole = sum(1 for i in clip_items if "#t" not in i)
    return whole, store.count("text"), docs


async def test_corpus_reasons_and_idempotent_reindex(tmp_path: Path, tiny_clip: Path) -> None:
    folder = tmp_path / "corpus"
    files = write_corpus(folder)
    files["huge_side"] = folder / "wide.jpg"
    files["huge_side"].write_bytes(huge_jpeg_bytes(48_000, 16))  # longest side over 40,000
    files["random_jpg"] = folder / "random.jpg"
    files["random_jpg"].write_bytes(random_bytes())
    files["ok"] = folder / "zz_ok.png"  # sorts last: the batch goes on after every failure
    files["ok"].write_bytes(noise_bytes(1))

    settings = make_settings(tmp_path / "data", tiny_clip)
    async with open_service(settings, Secrets({})) as svc:
        report = await svc.index_paths([folder], "local")
        failed = {f.source: f.error for f in report.failed}
        for key, words in BAD.items():
            src = str(files[key].resolve())
            assert src in failed, f"{key} not in failed: {report.to_json()}"
            assert words in failed[src], (key, failed[src])
        assert len(failed) == len(BAD)
        indexed: dict[str, set[str]] = {}
        for i in report.indexed:
            indexed.setdefault(i.source, set()).add(i.kind)
        for key, kind in {**GOOD, "ok": "image"}.items():
            assert indexed.get(str(files[key].resolve())) == {kind}, key
        skipped = {Path(s.source).name: s.reason for s in report.skipped}
        assert set(skipped) == {"random.bin"}  # unknown extension found in a folder
        assert all("unsupported file type" in r for r in skipped.values())

        # PDF pages carry their page numbers; text documents become chunks.
        rows = svc.library.catalog.find("local", source=str(files["pdf_text"].resolve()))
        assert sorted(r.page for r in rows) == [1, 2]
        assert "INV-20931" in next(r.text for r in rows if r.page == 1)
        hits = await svc.search("payment due March", Scope("local"))
        assert (hits[0].source, hits[0].kind, hits[0].page) == (
            str(files["pdf_text"].resolve()), "page", 2)
        hits = await svc.search("systemctl restart", Scope("local"))
        assert hits[0].source == str(files["md"].resolve()) and hits[0].kind == "chunk"

        # EXIF orientation was applied before the thumbnail was made (40x80, red on top).
        from PIL import Image

        [rot] = svc.library.catalog.find("local", source=str(files["exif_rotated"].resolve()))
        with Image.open(svc.library.blobs.thumbnail_path(rot.id)) as im:
            assert im.size[0] < im.size[1]
            r, _g, b = im.convert("RGB").getpixel((im.size[0] // 2, 2))
            assert r > 150 and b < 100

        stats = await svc.stats("local")
        before = await _counts(svc)
        n_items = stats.items
        assert n_items == len(report.indexed)
        assert before[0] == sum(1 for i in report.indexed if i.kind != "chunk")

        # Second run: nothing new, everything "already indexed", no duplicates anywhere.
        again = await svc.index_paths([folder], "local")
        assert again.indexed == []
        already = {s.source for s in again.skipped if s.reason == "already indexed"}
        assert already == set(indexed)
        assert {f.source for f in again.failed} == set(failed)
        assert (await svc.stats("local")).items == n_items
        assert await _counts(svc) == before

        # The same bytes under another name: skipped, naming the first source.
        copy = tmp_path / "copy.png"
        shutil.copy(files["ok"], copy)
        third = await svc.index_paths([copy], "local")
        assert third.indexed == []
        assert third.skipped[0].reason == (
            f"already indexed (same content as {files['ok'].resolve()})")

    # A fresh process (new service, same data dir) agrees.
    async with open_service(settings, Secrets({})) as svc:
        again = await svc.index_paths([folder], "local")
        assert again.indexed == [] and (await svc.stats("local")).items == n_items
        assert await _counts(svc) == before


async def test_200_megapixel_photo_is_indexed(tmp_path: Path, tiny_clip: Path) -> None:
    """A huge (but allowed) JPEG is decoded at reduced size, not refused."""
    big = tmp_path / "big.jpg"
    big.write_bytes(huge_jpeg_bytes())  # 16320 x 12240
    settings = make_settings(tmp_path / "data", tiny_clip)
    async with open_service(settings, Secrets({})) as svc:
        report = await svc.index_paths([big], "local")
        assert [i.kind for i in report.indexed] == ["image"], report.to_json()
        # the original bytes are kept as they were
        [row] = svc.library.catalog.find("local", source=str(big.resolve()))
        assert svc.library.blobs.path(row.file_sha).read_bytes() == big.read_bytes()


async def test_edited_file_indexed_again_replaces_its_old_version(
        tmp_path: Path, tiny_clip: Path) -> None:
    """An edited document or PDF indexed again answers from its new content only: the old
    passages and pages are gone from search, the catalog, the vectors and the blobs."""
    folder = tmp_path / "docs"
    folder.mkdir()
    notes = folder / "notes.md"
    notes.write_text("# Plan\n\nThe launch codename is zebrafish.\n")
    deck = folder / "deck.pdf"
    deck.write_bytes(corpus.pdf_bytes(["Old cover", "Old pricing walrus", "Old appendix"]))
    keep = folder / "keep.txt"
    keep.write_text("An untouched file about pelicans.\n")

    settings = make_settings(tmp_path / "data", tiny_clip)
    async with open_service(settings, Secrets({})) as svc:
        first = await svc.index_paths([folder], "local")
        assert len(first.indexed) == 5 and not first.failed
        old_blobs = {r.file_sha for r in svc.library.catalog.all("local")
                     if r.source != str(keep.resolve())}

        notes.write_text("# Plan\n\nThe launch codename is now ocelot.\n")
        deck.write_bytes(corpus.pdf_bytes(["New pricing only"]))
        second = await svc.index_paths([folder], "local")
        assert {i.source for i in second.indexed} == {str(notes.resolve()), str(deck.resolve())}

        rows = svc.library.catalog.all("local")
        by_source: dict[str, list[str]] = {}
        for r in rows:
            by_source.setdefault(Path(r.source).name, []).append(r.text)
        assert by_source == {"notes.md": ["# Plan\n\nThe launch codename is now ocelot."],
                             "deck.pdf": ["New pricing only"],
                             "keep.txt": ["An untouched file about pelicans."]}
        assert (await svc.stats("local")).items == 3
        assert await _counts(svc) == (1, 3, 3)  # one page; one passage per item
        hits = await svc.search("zebrafish", Scope("local"))
        assert all("zebrafish" not in h.text for h in hits)
        assert all("walrus" not in h.text for h in hits)
        for sha in old_blobs:  # the old originals are deleted, not just unlisted
            assert not svc.library.blobs.has(sha)

        # The same content again is only counted; nothing of the new version is dropped.
        third = await svc.index_paths([folder], "local")
        assert third.indexed == [] and (await svc.stats("local")).items == 3


async def test_pdf_with_a_broken_page_keeps_its_readable_pages(
        tmp_path: Path, tiny_clip: Path) -> None:
    """One page the PDF library cannot load costs that page, named in a warning; not the
    whole file as an "internal error" with a traceback in the log."""
    folder = tmp_path / "pdfs"
    folder.mkdir()
    deck = folder / "deck.pdf"
    deck.write_bytes(corpus.broken_page_pdf_bytes(["Cover", "Agenda", "Broken", "Pricing walrus",
                                      "Thanks"], broken=3))
    dead = folder / "dead.pdf"
    dead.write_bytes(corpus.broken_page_pdf_bytes(["Only page"], broken=1))

    settings = make_settings(tmp_path / "data", tiny_clip)
    async with open_service(settings, Secrets({})) as svc:
        report = await svc.index_paths([folder], "local")
        assert [(f.source, f.error) for f in report.failed] == [
            (str(dead.resolve()), "no page of this PDF can be read (page 1 cannot be read "
                                  "(Failed to load page.))")]
        assert [(w.source, w.error) for w in report.warnings] == [
            (str(deck.resolve()), "not indexed: page 3 cannot be read (Failed to load page.)")]
        rows = svc.library.catalog.find("local", source=str(deck.resolve()))
        assert sorted((r.page, r.text) for r in rows) == [
            (1, "Cover"), (2, "Agenda"), (4, "Pricing walrus"), (5, "Thanks")]
        assert len(report.indexed) == 4
        hits = await svc.search("Pricing walrus", Scope("local"))
        assert (hits[0].source, hits[0].page) == (str(deck.resolve()), 4)
        # The original is kept (forget and reindex use it) and a second run is only counted.
        assert svc.library.blobs.has(rows[0].file_sha)
        again = await svc.index_paths([deck], "local")
        assert again.indexed == [] and again.skipped[0].reason == "already indexed"


def test_folder_walk_picks_up_every_file_a_direct_run_indexes(tmp_path: Path) -> None:
    # `pixrag index notes.mdown` indexed the file, while `pixrag index notes/` skipped the
    # same file as "unsupported file type (.mdown)".
    from core.ingest import discover
    from core.media.imageio import sniff

    folder = tmp_path / "notes"
    folder.mkdir()
    files = {"plan.mdown": b"# Plan\nship it", "prices.csv": b"tier,eur\nteam,99\n",
             "table.tsv": b"a\tb\n", "deploy.log": b"error: port 8080 in use\n",
             "photo.jpe": noise_bytes(1, fmt="JPEG")}
    for name, data in files.items():
        (folder / name).write_bytes(data)
        assert sniff(data, name) in ("text", "image")  # what naming the file directly does
    (folder / "script.py").write_bytes(b"print('hi')\n")
    jobs, skipped, failed = discover([folder])
    assert sorted(j.name for j in jobs) == sorted(files)
    assert [Path(s.source).name for s in skipped] == ["script.py"] and not failed
