"""Two hosts on the same servers (Chroma, PostgreSQL, S3), interleaved at the worst moment:
one host stores an item's original and thumbnail, and before it commits the item's catalog
row the other host runs ``check --repair`` or forgets an item with the same bytes. The item
must end complete: its original and thumbnail still in the bucket, the index consistent."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from core.app import open_service
from core.config import Secrets
from core.maintenance import check
from core.service import PixRAG
from core.types import Scope
from tests.cli.helpers import make_settings, write_images
from tests.corpus import pdf_bytes

pytestmark = pytest.mark.slow

WAIT_S = 90


def _pause_after(obj: Any, name: str) -> tuple[threading.Event, threading.Event]:
    """Make ``obj.name`` run, then signal ``reached`` and wait for ``go`` (in its own thread:
    the library calls its parts from worker threads)."""
    reached, go = threading.Event(), threading.Event()
    original: Callable[..., Any] = getattr(obj, name)

    def paused(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        reached.set()
        assert go.wait(WAIT_S)
        setattr(obj, name, original)  # once
        return out

    setattr(obj, name, paused)
    return reached, go


async def _reached(event: threading.Event) -> None:
    assert await asyncio.to_thread(event.wait, WAIT_S)


@pytest.fixture
async def hosts(tmp_path: Path, tiny_clip: Path, chroma_url: str, pg_url: str, s3_url: str,
                s3_endpoint: str) -> AsyncIterator[tuple[PixRAG, PixRAG]]:
    env = {"PIXRAG_STORE__URL": chroma_url, "PIXRAG_CATALOG__URL": pg_url,
           "PIXRAG_BLOBS__URL": s3_url, "PIXRAG_BLOBS__ENDPOINT_URL": s3_endpoint,
           # the pauses below must not count as a frozen store
           "PIXRAG_STORE__TIMEOUT_S": str(WAIT_S + 30),
           "PIXRAG_STORE__PREFIX": "r" + uuid.uuid4().hex[:10]}
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(open_service(
            make_settings(tmp_path / "a", tiny_clip, **env), Secrets({})))
        b = await stack.enter_async_context(open_service(
            make_settings(tmp_path / "b", tiny_clip, **env), Secrets({})))
        yield a, b


async def _assert_complete(svc: PixRAG, space: str, n: int) -> None:
    lib = svc.library
    rows = await lib.read("test", lib.catalog.all, space)
    assert len(rows) == n
    for r in rows:
        assert r.image_sha and await lib.read("test", lib.blobs.has, r.image_sha), r.source
        assert await lib.read("test", lib.blobs.has_thumbnail, r.id), r.source
    report = await check(svc.c)
    assert report["ok"], report["problems"]


async def test_repair_and_forget_never_take_what_another_host_is_committing(
        hosts: tuple[PixRAG, PixRAG], tmp_path: Path) -> None:
    a, b = hosts
    images = write_images(tmp_path / "imgs", 3)

    # 1. B has stored the original and thumbnail, not yet the item; A repairs everything.
    reached, go = _pause_after(b.library, "_put_blobs")
    indexing = asyncio.ensure_future(b.index_paths([images[0]], "team"))
    await _reached(reached)
    report = await check(a.c, repair=True)
    assert report["counts"].get("orphan_original") == 1  # B's, seen as unused
    go.set()
    await asyncio.wait_for(indexing, WAIT_S)
    await _assert_complete(a, "team", 1)

    # 2. A's scan sees B's original unused; B commits before A's repair deletes anything.
    b_reached, b_go = _pause_after(b.library, "_put_blobs")
    indexing = asyncio.ensure_future(b.index_paths([images[1]], "team"))
    await _reached(b_reached)
    a_reached, a_go = _pause_after(a.library.catalog, "forgotten")  # the scan's last step
    repairing = asyncio.ensure_future(check(a.c, repair=True))
    await _reached(a_reached)
    b_go.set()
    await asyncio.wait_for(indexing, WAIT_S)
    a_go.set()
    await asyncio.wait_for(repairing, WAIT_S)
    await _assert_complete(a, "team", 2)

    # 3. A forgets an item while B indexes the same bytes into another space.
    await b.index_paths([images[2]], "old")
    reached, go = _pause_after(b.library, "_put_blobs")
    indexing = asyncio.ensure_future(b.index_paths([images[2]], "new"))
    await _reached(reached)
    assert len(await a.forget("old", str(images[2].resolve()))) == 1
    go.set()
    await asyncio.wait_for(indexing, WAIT_S)
    await _assert_complete(a, "new", 1)


async def test_an_item_forgotten_while_another_host_reads_its_text_stays_forgotten(
        hosts: tuple[PixRAG, PixRAG], tmp_path: Path) -> None:
    a, b = hosts
    pdf = tmp_path / "memo.pdf"
    pdf.write_bytes(pdf_bytes(["quarterly zeppelin maintenance memo"]))
    # B has checked that the page is still indexed and is about to store its text.
    reached, go = _pause_after(b.library.catalog, "live_ids")
    indexing = asyncio.ensure_future(b.index_paths([pdf], "team"))
    await _reached(reached)
    assert len(await a.forget("team", str(pdf.resolve()))) == 1
    go.set()
    await asyncio.wait_for(indexing, WAIT_S)
    report = await check(a.c)
    assert report["ok"], report["problems"]  # no text vectors or keyword rows left of it
    assert await a.library.keyword_search(Scope("team"), "zeppelin", 5) == []


async def test_a_repair_does_not_bring_back_what_another_host_forgot(
        hosts: tuple[PixRAG, PixRAG], tmp_path: Path) -> None:
    a, b = hosts
    images = write_images(tmp_path / "imgs", 2)
    await b.index_paths(images, "team")
    rows = await a.library.find(Scope("team", admin=True), source=str(images[0].resolve()))
    store = await a.library.vectors()
    store.delete_ids("clip", [rows[0].id])  # lost: `check --repair` re-embeds it...
    a.library.blobs.delete_thumbnail(rows[0].id)  # ... and re-makes this
    reached, go = _pause_after(a.library.catalog, "forgotten")  # the scan's last step
    repairing = asyncio.ensure_future(check(a.c, repair=True))
    await _reached(reached)
    assert len(await b.forget("team", str(images[0].resolve()))) == 1  # ... unless forgotten
    go.set()
    await asyncio.wait_for(repairing, WAIT_S)
    report = await check(b.c)
    assert report["ok"], report["problems"]
