"""A model change on one host (`pixrag reindex`) while another host keeps serving and
indexing with the old model, on the same servers."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from core.app import open_service
from core.config import Secrets
from core.errors import ModelMismatch
from core.maintenance import check, reindex
from core.types import Scope
from tests.cli.helpers import RELAXED, make_settings, write_images
from tests.clipmodel import build_clip
from tests.server.test_races import WAIT_S, _pause_after, _reached

pytestmark = pytest.mark.slow


async def test_items_indexed_or_forgotten_during_a_reindex(
        tmp_path: Path, tiny_clip: Path, chroma_url: str, pg_url: str, s3_url: str,
        s3_endpoint: str) -> None:
    new_clip = build_clip(tmp_path / "clip24", projection=24, seed=1)
    env = {"PIXRAG_STORE__URL": chroma_url, "PIXRAG_CATALOG__URL": pg_url,
           "PIXRAG_BLOBS__URL": s3_url, "PIXRAG_BLOBS__ENDPOINT_URL": s3_endpoint,
           "PIXRAG_STORE__TIMEOUT_S": str(WAIT_S + 30),
           "PIXRAG_STORE__PREFIX": "r" + uuid.uuid4().hex[:10], **RELAXED}
    images = write_images(tmp_path / "imgs", 4)
    async with AsyncExitStack() as stack:
        old = await stack.enter_async_context(open_service(
            make_settings(tmp_path / "old", tiny_clip, **env), Secrets({})))
        await old.index_paths(images[:3], "team")
        new = await stack.enter_async_context(open_service(
            make_settings(tmp_path / "new", new_clip, **env), Secrets({}), check_models=False))
        # The new host has read the catalog and is re-embedding; the old one indexes more.
        reached, go = _pause_after(new.library.catalog, "all")
        task = asyncio.ensure_future(reindex(new.c))
        await _reached(reached)
        await old.index_paths(images[3:], "team")
        assert len(await old.forget("team", str(images[1].resolve()))) == 1
        go.set()
        report = await asyncio.wait_for(task, WAIT_S)
        assert not report.failed
        # The old host is told what happened, not "collection ... does not exist".
        with pytest.raises(ModelMismatch, match="re-embedded with model .*set the new model"):
            await old.similar(images[0].read_bytes(), Scope("team"), k=1)
    async with open_service(make_settings(tmp_path / "fresh", new_clip, **env),
                            Secrets({})) as fresh:
        report = await check(fresh.c)
        assert report["ok"], report["problems"]  # nothing left of the forgotten image
        assert (await fresh.stats("team")).items == 3
        hits = await fresh.similar(images[3].read_bytes(), Scope("team"), k=1)
        assert hits[0].source == str(images[3].resolve())


async def test_other_hosts_follow_a_forced_reindex(tmp_path: Path, tiny_clip: Path,
                                                   chroma_url: str, pg_url: str, s3_url: str,
                                                   s3_endpoint: str) -> None:
    # `reindex --force` keeps the model and moves the index to a new collection: hosts that
    # had the old one open go on searching and indexing, no restart needed.
    env = {"PIXRAG_STORE__URL": chroma_url, "PIXRAG_CATALOG__URL": pg_url,
           "PIXRAG_BLOBS__URL": s3_url, "PIXRAG_BLOBS__ENDPOINT_URL": s3_endpoint,
           "PIXRAG_STORE__PREFIX": "r" + uuid.uuid4().hex[:10], **RELAXED}
    images = write_images(tmp_path / "imgs", 3)
    async with AsyncExitStack() as stack:
        serving = await stack.enter_async_context(open_service(
            make_settings(tmp_path / "a", tiny_clip, **env), Secrets({})))
        await serving.index_paths(images[:2], "team")
        assert (await serving.similar(images[0].read_bytes(), Scope("team"), k=1))[0].source \
            == str(images[0].resolve())
        other = await stack.enter_async_context(open_service(
            make_settings(tmp_path / "b", tiny_clip, **env), Secrets({})))
        assert not (await reindex(other.c, force=True)).failed
        hits = await serving.similar(images[1].read_bytes(), Scope("team"), k=1)
        assert hits[0].source == str(images[1].resolve())
        assert not (await serving.index_paths(images[2:], "team")).failed
        assert (await check(other.c))["ok"]


async def test_a_collection_lost_under_a_running_host_is_made_again(
        tmp_path: Path, tiny_clip: Path, chroma_url: str, pg_url: str) -> None:
    # The Chroma server came back on an emptied volume: the host goes on like one started
    # now (new items are indexed and found; `check --repair` restores the rest), instead of
    # failing every call with "Collection [...] does not exist" until it is restarted.
    env = {"PIXRAG_STORE__URL": chroma_url, "PIXRAG_CATALOG__URL": pg_url,
           "PIXRAG_STORE__PREFIX": "r" + uuid.uuid4().hex[:10], **RELAXED}
    images = write_images(tmp_path / "imgs", 2)
    async with open_service(make_settings(tmp_path / "a", tiny_clip, **env),
                            Secrets({})) as svc:
        await svc.index_paths(images[:1], "team")
        store = await svc.library.vectors()
        store._client.delete_collection(store.spec("clip")[0])  # behind the store's back
        assert not (await svc.index_paths(images[1:], "team")).failed
        hits = await svc.similar(images[1].read_bytes(), Scope("team"), k=1)
        assert hits[0].source == str(images[1].resolve())
