"""A model change on one host (`pixrag reindex`) while another host keeps serving and
indexing with the old model, on the same servers."""

from __future__ import annotations

import uuid
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from core.app import open_service
from core.config import Secrets
from core.maintenance import check, reindex
from core.types import Scope
from tests.cli.helpers import RELAXED, make_settings, write_images

pytestmark = pytest.mark.slow


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
