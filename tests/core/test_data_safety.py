"""Nothing lost: re-indexing beside the live index, bad names, special files, check/repair."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from core.app import open_service
from core.config import Secrets, Settings
from core.errors import UnsupportedInput
from core.ingest import read_limited, read_query_file
from core.maintenance import reindex
from core.types import Scope, Upload
from tests.cli.helpers import RELAXED, make_settings, noise_bytes, write_images
from tests.clipmodel import build_clip
from tests.corpus import TXT


@pytest.fixture(scope="module")
def other_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_clip(tmp_path_factory.mktemp("clip24"), projection=24, seed=1)


async def test_interrupted_reindex_keeps_the_old_index_and_resumes(
        tmp_path: Path, tiny_clip: Path, other_clip: Path) -> None:
    data = tmp_path / "data"
    images = write_images(tmp_path / "imgs", 12)
    async with open_service(make_settings(data, tiny_clip, **RELAXED), Secrets({})) as svc:
        await svc.index_paths(images, "local")

    # Start re-embedding with the new model and stop it half-way (Ctrl-C, kill).
    async with open_service(make_settings(data, other_clip), Secrets({}),
                            check_models=False) as svc:
        halfway = asyncio.Event()

        def progress(done: int, total: int) -> None:
            if done >= total // 2:
                halfway.set()

        task = asyncio.ensure_future(reindex(svc.c, progress=progress))
        await asyncio.wait_for(halfway.wait(), 60)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    # The old model still sees the whole index, untouched.
    async with open_service(make_settings(data, tiny_clip, **RELAXED), Secrets({})) as svc:
        assert (await svc.stats("local")).items == 12
        hits = await svc.similar(images[3].read_bytes(), Scope("local"), k=1)
        assert hits[0].source == str(images[3].resolve())
        assert (await svc.library.vectors()).count("clip") == 12

    # A re-run finishes the job and switches over.
    async with open_service(make_settings(data, other_clip), Secrets({}),
                            check_models=False) as svc:
        report = await reindex(svc.c)
        assert len(report.indexed) == 12 and not report.failed
    async with open_service(make_settings(data, other_clip, **RELAXED), Secrets({})) as svc:
        store = await svc.library.vectors()
        assert store.count("clip") == 12
        assert "pixrag_clip" not in store.collections()  # the old clip collection is gone
        hits = await svc.similar(images[5].read_bytes(), Scope("local"), k=1)
        assert hits[0].source == str(images[5].resolve())


async def test_text_model_unchanged_means_no_text_work(tmp_path: Path, tiny_clip: Path,
                                                       other_clip: Path) -> None:
    data = tmp_path / "data"
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text(TXT, encoding="utf-8")
    async with open_service(make_settings(data, tiny_clip), Secrets({})) as svc:
        await svc.index_paths([tmp_path / "docs"], "local")
        text_before = (await svc.library.vectors()).count("text")
    async with open_service(make_settings(data, other_clip), Secrets({}),
                            check_models=False) as svc:
        calls = svc.c.text_vectors.batches
        await reindex(svc.c)
        assert svc.c.text_vectors.batches == calls  # no passage re-embedded
        assert (await svc.library.vectors()).count("text") == text_before


async def test_a_bad_file_name_fails_alone_or_indexes(tmp_path: Path, tiny_clip: Path) -> None:
    folder = tmp_path / "mixed"
    write_images(folder, 3)
    bad = os.fsdecode(b"caf\xe9-latin1.png")  # not UTF-8: kept by Python as surrogate escapes
    (folder / bad).write_bytes(noise_bytes(40))
    async with open_service(make_settings(tmp_path / "data", tiny_clip), Secrets({})) as svc:
        report = await svc.index_paths([folder], "local")
        assert not report.failed, report.failed
        assert len(report.indexed) == 4
        shown = [i.source for i in report.indexed if "caf" in i.source]
        assert shown and shown[0].endswith("caf\\xe9-latin1.png")  # a safe display form
        # A lone surrogate from a chat upload name, then innocent uploads in the same batch.
        rep = await svc.index_uploads([
            Upload("evil\ud800.png", noise_bytes(41), "chat:1"),
            Upload("fine.png", noise_bytes(42), "chat:2"),
        ], "local")
        assert not rep.failed and len(rep.indexed) == 2
        more = await svc.index_uploads([Upload("next.png", noise_bytes(43), "chat:3")], "local")
        assert len(more.indexed) == 1
        assert (await svc.stats("local")).items == 7
        # Forgetting by the path works for the odd name too.
        removed = await svc.forget("local", str((folder / bad).resolve()))
        assert len(removed) == 1


async def test_catalog_write_error_rolls_back(tmp_path: Path) -> None:
    from core.library.catalog import Catalog, ItemRow

    cat = Catalog(tmp_path / "c.sqlite")
    good = ItemRow(id="a", space="s", kind="image", source="x", name="x", page=None,
                   file_sha="f", image_sha=None)
    with pytest.raises(UnicodeEncodeError):
        cat.add([ItemRow(id="b", space="s", kind="image", source="bad\ud800", name="n",
                         page=None, file_sha="g", image_sha=None)])
    cat.add([good])  # no "cannot start a transaction within a transaction"
    assert set(cat.get("s", ["a", "b"])) == {"a"}
    cat.close()


async def test_special_files_are_skipped(tmp_path: Path, tiny_clip: Path) -> None:
    folder = tmp_path / "special"
    write_images(folder, 2)
    os.symlink("/dev/zero", folder / "zero.png")
    os.mkfifo(folder / "pipe.png")
    async with open_service(make_settings(tmp_path / "data", tiny_clip), Secrets({})) as svc:
        report = await asyncio.wait_for(svc.index_paths([folder], "local"), 60)
    reasons = {Path(s.source).name: s.reason for s in report.skipped}
    assert "device" in reasons["zero.png"] and "pipe" in reasons["pipe.png"]
    assert len(report.indexed) == 2 and not report.failed


async def test_data_folders_inside_an_indexed_folder_are_not_indexed(
        tmp_path: Path, tiny_clip: Path) -> None:
    # `pixrag index ~` with the data folder under ~: its thumbnails are JPEGs, and each run
    # would index the previous run's thumbnails as new images.
    home = tmp_path / "home"
    write_images(home / "photos", 3)
    data = home / "data"
    async with open_service(make_settings(data, tiny_clip), Secrets({})) as svc:
        first = await svc.index_paths([home], "local")
        second = await svc.index_paths([home, data], "local")
        assert (await svc.stats("local")).items == 3
    assert len(first.indexed) == 3 and not second.indexed and not second.failed
    assert any(data.glob("blobs/thumbs/*.jpg"))
    own = [s.source for s in second.skipped if "PixRAG data folder" in s.reason]
    assert own == [str(data), str(data)]

    # Another instance's data folder (a backup copy) is recognised by its layout.
    shutil.copytree(data, home / "backup")
    async with open_service(make_settings(tmp_path / "other", tiny_clip), Secrets({})) as svc:
        third = await svc.index_paths([home], "local")
    assert len(third.indexed) == 3
    assert {Path(s.source).name for s in third.skipped
            if "PixRAG data folder" in s.reason} == {"backup", "data"}


def test_max_bytes_is_enforced_while_reading(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedInput, match="not a regular file"):
        read_limited(Path("/dev/zero"), "zero", 1000)
    f = tmp_path / "big.bin"
    f.write_bytes(b"x" * 5000)
    with pytest.raises(UnsupportedInput, match="limit"):
        read_limited(f, "big.bin", 1000)
    assert read_limited(f, "big.bin", 5000) == b"x" * 5000


def test_a_query_file_is_read_up_to_the_limit_even_without_an_end(tmp_path: Path) -> None:
    # `similar /dev/zero`: a device that never ends is refused once past the limit, and a
    # stream's message does not pretend to know its size.
    with pytest.raises(UnsupportedInput, match=r"^/dev/zero: larger than the limit of "
                                               r"1,000 bytes \(\[index\] max_bytes\)$"):
        read_query_file(Path("/dev/zero"), 1000)
    f = tmp_path / "big.bin"
    f.write_bytes(b"x" * 300_000)
    with pytest.raises(UnsupportedInput, match=r"file is 0\.3 MB, limit is 1,000 bytes"):
        read_query_file(f, 1000)
    assert read_query_file(f, 300_000) == b"x" * 300_000
    with pytest.raises(UnsupportedInput, match="cannot read file"):
        read_query_file(tmp_path, 1000)


def _images_and_notes(tmp_path: Path, tiny_clip: Path, n_images: int
                      ) -> tuple[Path, list[Path], Path, Settings]:
    """A data folder to be, ``n_images`` images, a folder with a text file, and settings."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "notes.txt").write_text(TXT, encoding="utf-8")
    data = tmp_path / "data"
    return (data, write_images(tmp_path / "imgs", n_images), docs,
            make_settings(data, tiny_clip))


async def test_check_reports_and_repairs(tmp_path: Path, tiny_clip: Path) -> None:
    data, images, docs, settings = _images_and_notes(tmp_path, tiny_clip, 4)
    async with open_service(settings, Secrets({})) as svc:
        await svc.index_paths([*images, docs], "local")
        assert (await svc.check())["ok"]
        rows = {r.name: r for r in svc.library.catalog.all("local")}
    # Damage: an emptied keyword index, a lost thumbnail, an orphan original.
    with sqlite3.connect(data / "keyword.sqlite") as db:
        db.execute("DELETE FROM docs")
    os.unlink(data / "blobs" / "thumbs" / f"{rows['img1.png'].id}.jpg")
    (data / "blobs" / "ab" / "cd").mkdir(parents=True)
    (data / "blobs" / "ab" / "cd" / ("abcd" + "0" * 60)).write_bytes(b"orphan")
    async with open_service(settings, Secrets({})) as svc:
        before = await svc.search("Berlin office", Scope("local", admin=True))
        report = await svc.check()
        kinds = report["counts"]
        assert kinds == {"missing_text_index": 1, "missing_thumbnail": 1,
                         "orphan_original": 1}, report
        # A report says what --repair would do, not that it was done.
        details = {p["kind"]: p["detail"] for p in report["problems"]}
        assert details["missing_thumbnail"] == (
            "no thumbnail; --repair re-makes it from the original")
        fixed = await svc.check(repair=True)
        assert all(p["repaired"] for p in fixed["problems"])
        details = {p["kind"]: p["detail"] for p in fixed["problems"]}
        assert details["missing_text_index"] == "no keyword rows: rebuilt from its text"
        assert (await svc.check())["ok"]
        after = await svc.search("Berlin office", Scope("local", admin=True))
        assert after and after[0].source == str((docs / "notes.txt").resolve())
        assert "keyword" in after[0].signals and not any("keyword" in h.signals for h in before)


async def test_an_interrupted_forget_is_finished_by_repair_never_undone(
        tmp_path: Path, tiny_clip: Path) -> None:
    # A forget killed after the catalog rows went but before the vectors did: the repair
    # took the vectors for rows lost by accident and brought the forgotten items back.
    data, images, docs, settings = _images_and_notes(tmp_path, tiny_clip, 2)
    async with open_service(settings, Secrets({})) as svc:
        await svc.index_paths([*images, docs], "local")
        store = await svc.library.vectors()

        def crash(space: str, items: object) -> None:
            raise KeyboardInterrupt  # the process dies here

        store.delete_items = crash  # type: ignore[method-assign]
        ids = [r.id for p in (images[0], docs / "notes.txt")
               for r in svc.library.catalog.find("local", source=str(p.resolve()))]
        with pytest.raises(KeyboardInterrupt):
            await svc.library.forget("local", ids)
    async with open_service(settings, Secrets({})) as svc:
        assert (await svc.stats("local")).items == 1
        report = await svc.check()
        assert report["counts"] == {"interrupted_forget": 2, "orphan_keyword_rows": 1,
                                    "orphan_original": 2}, report
        assert {p["source"] for p in report["problems"]
                if p["kind"] == "interrupted_forget"} == {
            str(images[0].resolve()), str((docs / "notes.txt").resolve())}
        fixed = await svc.check(repair=True)
        assert fixed["items"] == 1 and all(p["repaired"] for p in fixed["problems"])
        assert (await svc.check())["ok"]
        assert (await svc.stats("local")).items == 1
        assert not await svc.search("Berlin office", Scope("local", admin=True))
        assert sorted(p.name for p in (data / "blobs" / "thumbs").iterdir()) == [
            f"{r.id}.jpg" for r in svc.library.catalog.all("local")]
        # Indexing them again brings them back for good.
        again = await svc.index_paths([images[0], docs], "local")
        assert len(again.indexed) == 2
        assert (await svc.check())["ok"]
        assert (await svc.stats("local")).items == 3


async def test_running_an_interrupted_forget_again_finishes_it(tmp_path: Path,
                                                               tiny_clip: Path) -> None:
    # Re-running `pixrag forget PATH` after a kill found nothing ("not found") and left the
    # original, thumbnail and vectors on disk until a `pixrag check --repair`.
    from core.errors import NotFound

    data = tmp_path / "data"
    images = write_images(tmp_path / "imgs", 2)
    settings = make_settings(data, tiny_clip)
    async with open_service(settings, Secrets({})) as svc:
        await svc.index_paths(images, "local")
        gone = svc.library.catalog.find("local", source=str(images[0].resolve()))[0]
        keyword = svc.library.keyword
        real = keyword.delete_items

        def crash(items: object) -> None:
            raise KeyboardInterrupt  # the process dies here, its vectors already deleted

        keyword.delete_items = crash  # type: ignore[method-assign]
        with pytest.raises(KeyboardInterrupt):
            await svc.forget("local", str(images[0]))
        keyword.delete_items = real  # type: ignore[method-assign]
    async with open_service(settings, Secrets({})) as svc:
        with pytest.raises(NotFound):
            await svc.forget("local", str(images[0]))
        assert (await svc.check())["ok"]
        assert not (data / "blobs" / "thumbs" / f"{gone.id}.jpg").exists()
        assert gone.image_sha is not None and not svc.library.blobs.has(gone.image_sha)
        assert (await svc.stats("local")).items == 1


async def test_a_thumbnail_without_an_item_is_found_and_dropped(tmp_path: Path,
                                                              tiny_clip: Path) -> None:
    # A crash between a thumbnail's write and its item's commit left it for good: no check
    # saw it.
    data = tmp_path / "data"
    settings = make_settings(data, tiny_clip)
    async with open_service(settings, Secrets({})) as svc:
        await svc.index_paths(write_images(tmp_path / "imgs", 2), "local")
        thumbs = data / "blobs" / "thumbs"
        (thumbs / "local~0123456789abcdef.jpg").write_bytes(b"\xff\xd8 left by a crash")
        report = await svc.check()
        assert report["counts"] == {"orphan_thumbnail": 1}, report
        assert report["problems"][0]["item"] == "local:0123456789abcdef"
        assert (await svc.check(repair=True))["problems"][0]["repaired"]
        assert (await svc.check())["ok"]
        assert len(list(thumbs.iterdir())) == 2


async def test_empty_catalog_file_is_rebuilt_from_vectors(tmp_path: Path, tiny_clip: Path,
                                                          caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    data = tmp_path / "data"
    images = write_images(tmp_path / "imgs", 3)
    settings = make_settings(data, tiny_clip, **RELAXED)
    async with open_service(settings, Secrets({})) as svc:
        await svc.index_paths(images, "local")
    for name in ("catalog.sqlite", "catalog.sqlite-wal", "catalog.sqlite-shm"):
        p = data / name
        if p.exists():
            p.write_bytes(b"")
    async with open_service(settings, Secrets({})) as svc:
        assert "check --repair" in caplog.text
        assert (await svc.stats("local")).items == 0
        report = await svc.check(repair=True)
        assert report["counts"] == {"missing_catalog_row": 3}
        assert (await svc.stats("local")).items == 3
        hits = await svc.similar(images[2].read_bytes(), Scope("local"), k=1)
        assert hits[0].source == str(images[2].resolve())
        # The files are known again: re-indexing is a no-op.
        again = await svc.index_paths(images, "local")
        assert not again.indexed and len(again.skipped) == 3


async def test_lost_original_is_reported(tmp_path: Path, tiny_clip: Path,
                                         other_clip: Path) -> None:
    data = tmp_path / "data"
    images = write_images(tmp_path / "imgs", 3)
    async with open_service(make_settings(data, tiny_clip), Secrets({})) as svc:
        await svc.index_paths(images, "local")
        row = next(r for r in svc.library.catalog.all("local") if r.name == "img0.png")
    assert row.image_sha is not None
    os.unlink(data / "blobs" / row.image_sha[:2] / row.image_sha[2:4] / row.image_sha)
    async with open_service(make_settings(data, other_clip), Secrets({}),
                            check_models=False) as svc:
        report = await reindex(svc.c)
        assert [f.error for f in report.failed] == ["original bytes missing from the blob store"]
    async with open_service(make_settings(data, other_clip), Secrets({})) as svc:
        report = await svc.check()
        assert report["counts"] == {"missing_original": 1, "unfindable_item": 1}
        await svc.check(repair=True)
        assert (await svc.stats("local")).items == 2  # the dead item is gone, not counted


async def test_an_almost_full_disk_is_refused_before_the_vector_store_freezes_on_it(
        tmp_path: Path, tiny_clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Embedded Chroma retries forever, holding the interpreter lock, when the disk fills
    # during its write: `pixrag index` froze for good (not even SIGTERM got through).
    from core.errors import DiskFull

    images = write_images(tmp_path / "imgs", 3)
    real = shutil.disk_usage

    def almost_full(path: object) -> object:
        usage = real(path)  # type: ignore[arg-type]
        return type(usage)(usage.total, usage.total - 4096 * 1024, 4096 * 1024)

    async with open_service(make_settings(tmp_path / "data", tiny_clip), Secrets({})) as svc:
        await svc.index_paths(images[:1], "local")
        monkeypatch.setattr(shutil, "disk_usage", almost_full)
        with pytest.raises(DiskFull, match="4096 KiB free .* needs at least 64 MiB"):
            await svc.index_paths(images[1:], "local")
        with pytest.raises(DiskFull):
            await svc.forget("local", str(images[0]))
        monkeypatch.undo()
        assert (await svc.stats("local")).items == 0  # forgotten, the rest by --repair
        assert (await svc.check(repair=True))["counts"] == {
            "interrupted_forget": 1, "orphan_original": 3, "orphan_thumbnail": 2}
        report = await svc.index_paths(images, "local")
        assert len(report.indexed) == 3 and (await svc.check())["ok"]


async def test_a_full_disk_stops_indexing_with_one_clear_error(
        tmp_path: Path, tiny_clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from core.errors import DiskFull, public_message
    from core.library import blobs

    images = write_images(tmp_path / "imgs", 6)

    def full(path: Path, data: bytes) -> None:  # what the file system says when it is full
        raise OSError(errno.ENOSPC, "No space left on device")

    async with open_service(make_settings(tmp_path / "data", tiny_clip), Secrets({})) as svc:
        monkeypatch.setattr(blobs, "_atomic_write", full)
        with pytest.raises(DiskFull) as exc:
            await svc.index_paths(images, "local")
        assert "no space left on device" in str(exc.value)
        assert public_message(exc.value) == DiskFull.public  # chat: a fixed sentence
        assert (await svc.stats("local")).items == 0  # nothing half-written is shown
        monkeypatch.undo()
        report = await svc.index_paths(images, "local")  # space again: the re-run completes
        assert len(report.indexed) == 6 and not report.failed
