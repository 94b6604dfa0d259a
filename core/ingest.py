"""Ingestion, phase 1: files and uploads -> findable items.

Phase 1 (here) reads, hashes, decodes, makes the thumbnail, the perceptual hash and the CLIP
vectors, and commits the catalog row: from then on the item is found by CLIP and
near-duplicate search. Phase 2 (:mod:`core.enrich`) adds OCR text, captions, text vectors and
keyword passages from a durable queue written in the same transaction as the row.

Per item the Library's write order applies (blobs -> vectors -> keyword -> catalog row, the
commit marker), so a kill at any moment leaves nothing half-shown and the re-run redoes only
what has no catalog row (ids are derived from space + content, so redoing is an overwrite).
Decoding, model calls and storage each run in their own executor; at most ``[embedding]
queue_size`` files are in flight, so a folder of 100k photos or a flood of uploads waits
instead of filling memory. A store that stops answering stops the run (one error, not a
failure per file).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import math
import os
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from core.components import Components
from core.errors import DiskFull, ModelUnavailable, PixragError, StoreError, UnsupportedInput
from core.glossary import annotated_passages
from core.library.catalog import ItemRow
from core.library.library import ItemWrite
from core.media import neardup
from core.media.chunking import split_document, split_passages
from core.media.imageio import (
    IMAGE_EXTS,
    TEXT_EXTS,
    Limits,
    decode_text,
    load_image,
    sniff,
    to_jpeg,
)
from core.media.pdf import BadPage, page_count, render_pages
from core.types import (
    Failed,
    IndexedItem,
    IndexReport,
    Kind,
    Origin,
    Scope,
    Skipped,
    Upload,
)

log = logging.getLogger(__name__)

#: What a folder walk picks up: the names ``sniff`` accepts when a file is named directly,
#: so a file is never "unsupported" in a folder and indexed on its own.
FOLDER_EXTS = IMAGE_EXTS | TEXT_EXTS | {".pdf"}
WORK_SIDE = 2048  # decode big photos at most this large: enough for OCR, CLIP and thumbnails
LIGHT_SIDE = 640  # ... and this large when phase 1 needs only CLIP and the thumbnail
PDF_BATCH = 4  # pages rendered at once: bounds memory for 1000-page PDFs
READ_CHUNK = 1 << 20

Progress = Callable[[int, int], None]


def item_id(space: str, file_sha: str, part: int | None = None) -> str:
    """Stable id from space + content (+ page/chunk): same bytes twice = same item."""
    key = f"{space}\0{file_sha}\0{'' if part is None else part}"
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def display_text(text: str) -> str:
    """A form of any name or path that can be stored and shown: file names that are not
    UTF-8 (kept by Python as surrogate escapes) show their bytes as ``\\xNN``; a lone
    surrogate from a chat upload becomes U+FFFD. Valid text is unchanged."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return os.fsencode(text).decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


@dataclass
class FileJob:
    name: str  # base name (display form)
    source: str  # shown in results: path, URL or message link (display form)
    origin: Origin
    path: Path | None = None
    data: bytes | None = None


OWN_FOLDER = "a PixRAG data folder (copies and thumbnails of indexed files, not indexed again)"


def discover(paths: Sequence[Path], own: Sequence[Path] = (),
             ) -> tuple[list[FileJob], list[Skipped], list[Failed]]:
    """Expand folders (recursively, sorted, hidden entries ignored) into file jobs. Anything
    that is not a regular file (devices, pipes, sockets, links to them) is skipped with a
    reason: reading ``/dev/zero`` never ends and opening a pipe blocks.

    Folders in ``own`` (the data folder, the Chroma folder) and any other folder laid out as
    a PixRAG data folder are skipped whole: ``pixrag index ~`` would otherwise index the
    thumbnails of everything indexed so far as new images, once more on every run."""
    jobs: list[FileJob] = []
    skipped: list[Skipped] = []
    failed: list[Failed] = []
    mine = {_identity(o) for o in own} - {None}

    def is_own(folder: Path) -> bool:
        return _identity(folder) in mine or _looks_like_data_folder(folder)

    for p in paths:
        if p.is_dir():
            if is_own(p):
                skipped.append(Skipped(display_text(str(p)), OWN_FOLDER))
                continue
            for root, dirs, files in os.walk(p):
                keep = []
                for d in sorted(dirs):
                    if d.startswith("."):
                        continue
                    if is_own(Path(root) / d):
                        skipped.append(Skipped(display_text(str(Path(root) / d)), OWN_FOLDER))
                        continue
                    keep.append(d)
                dirs[:] = keep
                for f in sorted(files):
                    fp = Path(root) / f
                    if f.startswith("."):
                        continue
                    if fp.suffix.lower() not in FOLDER_EXTS:
                        kind = fp.suffix or "no extension"
                        skipped.append(Skipped(display_text(str(fp)),
                                               f"unsupported file type ({kind})"))
                        continue
                    why = _not_regular(fp)
                    if why:
                        skipped.append(Skipped(display_text(str(fp)), why))
                        continue
                    jobs.append(_path_job(fp))
        elif p.is_file():
            jobs.append(_path_job(p))
        elif p.exists() or p.is_symlink():
            why = _not_regular(p) or "not a regular file"
            failed.append(Failed(display_text(str(p)), why))
        else:
            failed.append(Failed(display_text(str(p)), "no such file or folder"))
    return jobs, skipped, failed


def _identity(folder: Path) -> tuple[int, int] | None:
    """Device and inode: the same folder reached through a link or another spelling."""
    try:
        st = folder.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _looks_like_data_folder(folder: Path) -> bool:
    # Another PixRAG data folder (a second instance's, a backup): its catalog beside its
    # blobs or its Chroma folder. Two cheap stats per folder walked.
    return (folder / "catalog.sqlite").is_file() and (
        (folder / "blobs").is_dir() or (folder / "chroma").is_dir())


def _not_regular(p: Path) -> str:
    try:
        mode = p.stat().st_mode  # follows links: a link to a regular file is fine
    except OSError as exc:
        return f"cannot read file ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return ""
    what = ("a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else
            "a named pipe" if stat.S_ISFIFO(mode) else
            "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
    return f"not a regular file ({what})" if what != "not a regular file" else what


def _path_job(p: Path) -> FileJob:
    return FileJob(name=display_text(p.name), source=display_text(str(p.resolve())),
                   origin=Origin(), path=p)


def upload_job(u: Upload) -> FileJob:
    return FileJob(name=display_text(u.name), source=display_text(u.source), origin=u.origin,
                   data=u.data)


def read_limited(path: Path, name: str, max_bytes: int) -> bytes:
    """The bytes of a regular file, at most ``max_bytes``: checked from ``stat`` before
    reading and enforced while reading (a file may grow, or lie about its size). Opened
    non-blocking and checked with ``fstat`` so a pipe swapped in meanwhile cannot hang us."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise UnsupportedInput(name, f"cannot read file ({exc.strerror or exc})") from exc
    with os.fdopen(fd, "rb", buffering=0) as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsupportedInput(name, "not a regular file")
        if st.st_size > max_bytes:
            raise UnsupportedInput(name, _too_big(st.st_size, max_bytes))
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return _read_capped(f, name, max_bytes)


def read_query_file(path: Path, max_bytes: int) -> bytes:
    """The bytes of a file to search with or ask about (``similar IMAGE``, ``ask --image``):
    a regular file, or a pipe or device (``/dev/stdin``, ``<(convert ...)``), read until its
    end but never past ``max_bytes`` (``/dev/zero`` would otherwise fill the memory).

    Unlike :func:`read_limited` (folder walks, where a pipe is a surprise to skip) the person
    named this file, so a pipe is read and may block until its writer sends data."""
    name = str(path)
    try:
        f = open(path, "rb", buffering=0)  # noqa: SIM115 - closed below, errors mapped first
    except OSError as exc:
        raise UnsupportedInput(name, f"cannot read file ({exc.strerror or exc})") from exc
    with f:
        try:
            size = os.fstat(f.fileno())
            if stat.S_ISREG(size.st_mode) and size.st_size > max_bytes:
                raise UnsupportedInput(name, _too_big(size.st_size, max_bytes))
            return _read_capped(f, name, max_bytes)
        except OSError as exc:  # a directory (EISDIR), an I/O error midway
            raise UnsupportedInput(name, f"cannot read file ({exc.strerror or exc})") from exc


def _read_capped(f: io.FileIO, name: str, max_bytes: int) -> bytes:
    """Read ``f`` to its end in chunks; UnsupportedInput as soon as it passes ``max_bytes``
    (a stream's size is known only by reading it, and no more than the limit is kept)."""
    parts: list[bytes] = []
    total = 0
    while True:
        chunk = f.read(min(READ_CHUNK, max_bytes + 1 - total))
        if not chunk:
            break
        total += len(chunk)
        if total > max_bytes:
            raise UnsupportedInput(name, _over_limit(max_bytes))
        parts.append(chunk)
    return b"".join(parts)


class Ingestor:
    def __init__(self, c: Components) -> None:
        self.c = c
        self.s = c.settings
        self.lib = c.library
        self.limits = Limits.from_settings(self.s.index)
        # Phase 1 needs only CLIP (224 px) and the thumbnail (384); JPEG draft decoding at
        # 1/2-1/8 scale is several times cheaper than a full decode. Phase 2 decodes again,
        # larger, from the stored original, and only where there may be text.
        self.work_side = max(LIGHT_SIDE, self.s.index.thumbnail_px)
        # Identical bytes arriving twice at once (a copied file, a re-posted attachment) are
        # processed once: the second waits for the first instead of redoing it.
        self._inflight: dict[tuple[str, str], asyncio.Future[str | None]] = {}

    @property
    def needs_phase2(self) -> bool:
        return self.s.index.ocr or (self.s.index.captions and self.c.captioner is not None)

    async def run(self, jobs: Sequence[FileJob], space: str, *,
                  progress: Progress | None = None) -> IndexReport:
        report = IndexReport()
        results: list[IndexReport | None] = [None] * len(jobs)
        window = asyncio.Semaphore(self.c.pools.pipeline.queue)
        done = 0
        stop: list[BaseException] = []

        async def one(i: int, job: FileJob) -> None:
            nonlocal done
            try:
                results[i] = await self._file(job, space)
            except (StoreError, DiskFull, ModelUnavailable) as exc:
                # The store is gone, or a model cannot load: every file would fail the same
                # way, so the whole run stops with this one error.
                if not stop:
                    stop.append(exc)
                    log.debug("stopping the run: %s", exc)
            finally:
                window.release()
            done += 1
            if progress is not None:
                progress(done, len(jobs))

        # A task is created only when a window slot is free, so memory stays bounded.
        async with asyncio.TaskGroup() as tg:
            for i, job in enumerate(jobs):
                await window.acquire()
                if stop:
                    window.release()
                    break
                tg.create_task(one(i, job))
        if stop:
            raise stop[0]
        for r in results:
            if r is not None:
                report.extend(r)
        return report

    async def _file(self, job: FileJob, space: str) -> IndexReport:
        report = IndexReport()
        try:
            data, file_sha = await self._read(job)
            key = (space, file_sha)
            running = self._inflight.get(key)
            if running is not None:
                first = await asyncio.shield(running)
                if first is None:  # the twin failed: same bytes, same verdict
                    raise UnsupportedInput(job.name, "same content as a file that failed")
                report.skipped.append(Skipped(job.source, "already indexed" if first == job.source
                                              else f"already indexed (same content as {first})"))
                return report
            # Registered before any await, so a twin arriving meanwhile waits for this one.
            self._inflight[key] = asyncio.get_running_loop().create_future()
            ok = False
            already: str | None = None
            try:
                already = await self.lib.file_done(space, file_sha)
                if already is not None:
                    same = already == job.source
                    report.skipped.append(Skipped(
                        job.source, "already indexed" if same
                        else f"already indexed (same content as {already})"))
                else:
                    await self._new_file(job, data, file_sha, space, report)
                if job.path is not None and already != job.source:
                    # (A path indexed with these very bytes has no other version to drop:
                    # a no-op re-run of a large folder costs no extra look-up per file.)
                    await self._drop_replaced(job, file_sha, space)
                ok = True
            finally:
                fut = self._inflight.pop(key)
                # The path the content is indexed under, which a twin's message names.
                fut.set_result((already or job.source) if ok else None)
        except (StoreError, DiskFull, ModelUnavailable):
            raise
        except PixragError as exc:
            report.failed.append(Failed(job.source, _reason(exc, job.name)))
        except Exception as exc:  # one bad file must not stop the batch: record and go on
            log.exception("unexpected error indexing %s", job.source)
            report.failed.append(Failed(job.source, f"internal error ({type(exc).__name__})"))
        return report

    async def _new_file(self, job: FileJob, data: bytes, file_sha: str, space: str,
                        report: IndexReport) -> None:
        kind = await self.c.run(self.c.pools.decode, sniff, data, job.name)
        if kind == "image":
            items = await self._image(job, data, file_sha, space)
        elif kind == "pdf":
            items = await self._pdf(job, data, file_sha, space, report)
        else:
            items = await self._text(job, data, file_sha, space)
        report.indexed.extend(items)
        if not items:
            # Not marked as indexed: a mark without items is what `pixrag check` reports as
            # a problem, and the next run says "no content to index" again, not "already
            # indexed" (reading a blank file again costs nothing).
            report.skipped.append(Skipped(job.source, "no content to index"))
            return
        await self.lib.mark_file(space, file_sha, job.source, len(items))

    async def _drop_replaced(self, job: FileJob, file_sha: str, space: str) -> None:
        """Forget what an earlier version of this file left: an edited document indexed
        again would otherwise answer from its old passages beside its new ones. Only after
        the new version is committed, so the file never drops out of search meanwhile."""
        rows = await self.lib.find(Scope(space=space, admin=True), source=job.source)
        stale = [r.id for r in rows if r.file_sha != file_sha]
        if stale:
            await self.lib.forget(space, stale)
            log.info("%s changed: forgot %d item(s) of its earlier version", job.source,
                     len(stale))

    async def _read(self, job: FileJob) -> tuple[bytes, str]:
        """Bytes and their SHA-256, off the event loop (hashing 100 MB takes a while)."""
        max_bytes = self.limits.max_bytes
        if job.data is not None:
            data = job.data
            if len(data) > max_bytes:
                raise UnsupportedInput(job.name, _too_big(len(data), max_bytes))
            return data, await self.c.run(self.c.pools.decode, _sha256, data)
        assert job.path is not None
        path = job.path

        def read() -> tuple[bytes, str]:
            data = read_limited(path, job.name, max_bytes)
            return data, _sha256(data)

        return await self.c.run(self.c.pools.decode, read)

    # images ---------------------------------------------------------------------------------
    async def _image(self, job: FileJob, data: bytes, file_sha: str,
                     space: str) -> list[IndexedItem]:
        iid = item_id(space, file_sha)
        if await self.lib.existing(space, [iid]):
            return [IndexedItem(iid, job.source, "image")]
        decoded = await self.c.run(self.c.pools.decode, lambda: load_image(
            data, job.name, self.limits, max_side=self.work_side))
        write = await self._prepare_visual(
            job, space, iid, "image", decoded.image, file_sha, None, text_layer="",
            image_blob=data)
        await self._commit([write])
        return [IndexedItem(iid, job.source, "image")]

    async def _prepare_visual(self, job: FileJob, space: str, iid: str, kind: Kind,
                              image: Image.Image, file_sha: str, page: int | None, *,
                              text_layer: str, image_blob: bytes | None) -> ItemWrite:
        """Thumbnail, perceptual hash, CLIP pixels; the text waits for phase 2."""
        clip = await self.c.clip()
        thumb_px = self.s.index.thumbnail_px

        def visual() -> tuple[bytes, str, np.ndarray, list[np.ndarray], bytes]:
            thumb = to_jpeg(_thumb_source(image, thumb_px), thumb_px)
            ph = neardup.to_text(neardup.hash_image(image))
            pixels = clip.preprocess([image])[0]
            tiles = list(clip.preprocess(crops)) if (crops := tile_boxes(image)) else []
            # What answers show the model: the original image, or the rendered PDF page.
            blob = image_blob if image_blob is not None else to_jpeg(image, WORK_SIDE, 90)
            return thumb, ph, pixels, tiles, blob

        thumb, ph, pixels, tiles, blob = await self.c.run(self.c.pools.decode, visual)
        image_sha = await self.c.run(self.c.pools.decode, _sha256, blob)
        vecs = await self.c.clip_images.submit_many([pixels, *tiles])
        text = text_layer.strip()
        enrich = self.needs_phase2 or bool(text)
        row = ItemRow(
            id=iid, space=space, kind=kind, source=job.source, name=job.name, page=page,
            file_sha=file_sha, image_sha=image_sha, text=text, phash=ph,
            **_origin_cols(job.origin), created=time.time(), stage=1 if enrich else 2)
        # Tiles are extra vectors of the same item ("<id>#t<n>", item=<id>): search collapses
        # them into their image, forget deletes them with it.
        clip_vecs = [(iid, vecs[0])] + [(f"{iid}#t{n}", v) for n, v in enumerate(vecs[1:])]
        return ItemWrite(row=row, blobs=[blob], thumbnail=thumb, clip=clip_vecs, enrich=enrich)

    # PDFs -----------------------------------------------------------------------------------
    async def _pdf(self, job: FileJob, data: bytes, file_sha: str, space: str,
                   report: IndexReport) -> list[IndexedItem]:
        c = self.c
        n = await c.run(c.pools.decode, page_count, data, job.name)
        if n > self.s.index.max_pdf_pages:
            raise UnsupportedInput(job.name, f"PDF has {n} pages, limit is "
                                   f"{self.s.index.max_pdf_pages} ([index] max_pdf_pages)")
        items: list[IndexedItem] = []
        bad: list[BadPage] = []
        stored_pdf = False
        for start in range(1, n + 1, PDF_BATCH):
            numbers = list(range(start, min(n, start + PDF_BATCH - 1) + 1))
            ids = {p: item_id(space, file_sha, p) for p in numbers}
            have = await self.lib.existing(space, list(ids.values()))
            todo = [p for p in numbers if ids[p] not in have]
            items += [IndexedItem(ids[p], job.source, "page") for p in numbers if ids[p] in have]
            if not todo:
                continue
            pages = await c.run(c.pools.decode, lambda t=todo: render_pages(
                data, job.name, t, dpi=self.s.index.pdf_dpi, max_side=WORK_SIDE, bad=bad))
            writes = [await self._prepare_visual(job, space, ids[pg.number], "page", pg.image,
                                                 file_sha, pg.number, text_layer=pg.text or "",
                                                 image_blob=None) for pg in pages]
            if not writes:
                continue
            if not stored_pdf:  # the original PDF, once: "forget" and re-index use it
                writes[0].blobs.append(data)
                stored_pdf = True
            await self._commit(writes)
            items += [IndexedItem(w.row.id, job.source, "page") for w in writes]
        if bad and not items:
            raise UnsupportedInput(job.name, "no page of this PDF can be read "
                                   f"({bad[0].reason})")
        report.warnings += [Failed(job.source, f"not indexed: {b.reason}")
                            for b in bad]
        return sorted(items, key=lambda i: i.id)

    # text documents (one phase: their text is at hand, no OCR) -------------------------------
    async def _text(self, job: FileJob, data: bytes, file_sha: str,
                    space: str) -> list[IndexedItem]:
        c = self.c
        text = await c.run(c.pools.decode, decode_text, data, job.name)
        chunks = split_document(text, chunk_chars=self.s.index.chunk_chars)
        rows: list[tuple[ItemRow, list[str]]] = []
        for n, chunk in enumerate(chunks):
            iid = item_id(space, file_sha, n)
            passages = [p.text for p in split_passages(chunk.text,
                                                       max_chars=self.s.text.passage_chars)]
            row = ItemRow(id=iid, space=space, kind="chunk", source=job.source, name=job.name,
                          page=n + 1, file_sha=file_sha, image_sha=None, text=chunk.text,
                          **_origin_cols(job.origin), created=time.time())
            rows.append((row, passages or [chunk.text]))
        have = await self.lib.existing(space, [r.id for r, _ in rows])
        todo = [(r, p) for r, p in rows if r.id not in have]
        for start in range(0, len(todo), 64):
            part = todo[start:start + 64]
            writes = [ItemWrite(row=r, passages=await self.passages(r.id, p)) for r, p in part]
            if start == 0:
                writes[0].blobs.append(data)
            await self._commit(writes)
        return [IndexedItem(r.id, job.source, "chunk") for r, _ in rows]

    async def passages(self, iid: str, texts: Sequence[str]
                       ) -> list[tuple[str, np.ndarray, str]]:
        pieces = [(f"{iid}#{i}", t) for i, t in enumerate(texts)]
        if self.s.text.glossary:  # hundreds of regexes per line: off the event loop
            pieces += await self.c.run(self.c.pools.decode, annotated_passages,
                                       await self.c.glossary(), iid,
                                       "\n".join(texts), self.s.text.passage_chars)
        vecs = await self.c.text_vectors.submit_many([t for _, t in pieces])
        return [(pid, v, t) for (pid, t), v in zip(pieces, vecs, strict=True)]

    async def _commit(self, writes: Sequence[ItemWrite]) -> None:
        await self.lib.commit(writes)

    async def aclose(self) -> None:
        return None


MAX_TILES = 6


def tile_boxes(image: Image.Image, aspect: float = 2.0) -> list[Image.Image]:
    """Square crops covering a long image (phone screenshots, panoramas, long pages).

    CLIP centre-crops its input to a square, so on a 1170x2532 screenshot it never sees the top
    or the bottom third. Such images also get evenly spaced, overlapping square tiles over the
    whole length; ordinary photos and screens (4:3, 16:9) get none and cost nothing extra.
    """
    w, h = image.size
    short, long_ = min(w, h), max(w, h)
    if short < 16 or long_ / short < aspect:
        return []
    # A little slack: a 3:1 image decoded at a reduced size is 3.004:1, still three tiles.
    n = min(MAX_TILES, math.ceil(long_ / short - 0.02))
    step = (long_ - short) / (n - 1) if n > 1 else 0
    boxes = [(0, round(i * step), w, round(i * step) + short) if h > w
             else (round(i * step), 0, round(i * step) + short, h) for i in range(n)]
    return [image.crop(b) for b in boxes]


def _thumb_source(image: Image.Image, side: int) -> Image.Image:
    """Box-reduce by an integer factor to no less than ``side`` before the LANCZOS thumbnail:
    on a 1280x960 photo that is 3.5 ms instead of 15 (PIL's default ``reducing_gap`` of 2
    does not reduce below 4x), and the same as ``thumbnail(reducing_gap=1.0)``."""
    factor = max(image.size) // side
    return image.reduce(factor) if factor > 1 and image.mode in ("RGB", "RGBA", "L") else image


def _origin_cols(o: Origin) -> dict[str, Any]:
    return {"audience": o.audience, "platform": o.platform, "channel": o.channel,
            "message": o.message, "attachment": o.attachment, "author": o.author,
            "link": o.link, "private": o.private}


def _too_big(size: int, limit: int) -> str:
    return f"file is {_size(size)}, limit is {_size(limit)} ([index] max_bytes)"


def _over_limit(limit: int) -> str:
    """A file found too big while reading it (a stream, a file growing): its size is unknown."""
    return f"larger than the limit of {_size(limit)} ([index] max_bytes)"


def _size(n: int) -> str:
    # Bytes below 0.1 MB: a small configured limit would read "0.0 MB".
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n:,} bytes"


def _reason(exc: PixragError, name: str) -> str:
    if isinstance(exc, UnsupportedInput):
        return exc.reason
    return str(exc)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
