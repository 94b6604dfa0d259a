"""Build a :class:`Library` from the settings: embedded parts under the data directory by
default, server parts (Chroma server, PostgreSQL, S3) where their URLs are configured."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path

from core.config import Settings
from core.errors import StoreError
from core.library.library import Library
from core.library.parts import BlobPart, CatalogPart, KeywordPart
from core.library.vectors import VectorStore, redact_url

log = logging.getLogger(__name__)


def _parts(settings: Settings, opening: list[str]) -> tuple[CatalogPart, KeywordPart, BlobPart]:
    """Open the three parts; ``opening`` ends with the one being opened (for a time-out
    message that names the server that did not answer)."""
    data = settings.data_path
    timeout = settings.store.timeout_s
    catalog: CatalogPart
    keyword: KeywordPart
    blobs: BlobPart
    if settings.catalog.url:
        from core.library.pg_catalog import PgCatalog
        from core.library.pg_database import redact
        from core.library.pg_keyword import PgKeywordIndex

        opening.append(f"the catalog (PostgreSQL at {redact(settings.catalog.url)})")
        pg = PgCatalog(settings.catalog.url, statement_timeout_s=timeout)
        catalog = pg
        try:  # one connection pool for both; the catalog owns (and closes) it
            keyword = PgKeywordIndex(pg.database)
        except BaseException:
            catalog.close()
            raise
    else:
        from core.library.catalog import Catalog
        from core.library.keyword import KeywordIndex

        data.mkdir(parents=True, exist_ok=True)
        catalog = Catalog(data / "catalog.sqlite", timeout_s=timeout)
        try:
            keyword = KeywordIndex(data / "keyword.sqlite", busy_timeout_s=timeout)
        except BaseException:
            catalog.close()
            raise
    try:
        if settings.blobs.url:
            from core.library.s3_blobs import S3BlobStore

            where = settings.blobs.url + (f" at {redact_url(settings.blobs.endpoint_url)}"
                                          if settings.blobs.endpoint_url else "")
            opening.append(f"the blob store (S3 {where})")
            blobs = S3BlobStore(settings.blobs.url, data / "blob-cache",
                                endpoint_url=settings.blobs.endpoint_url or None,
                                cache_bytes=settings.blobs.cache_mb * 1024 * 1024,
                                read_timeout_s=timeout)
        else:
            from core.library.blobs import BlobStore

            blobs = BlobStore(data / "blobs")
    except BaseException:
        catalog.close()
        keyword.close()
        raise
    return catalog, keyword, blobs


def _close_late(future: asyncio.Future[tuple[CatalogPart, KeywordPart, BlobPart]]) -> None:
    if future.cancelled() or future.exception() is not None:
        return
    catalog, keyword, blobs = future.result()
    keyword.close()
    catalog.close()
    close = getattr(blobs, "close", None)
    if close is not None:
        close()


def vector_opener(settings: Settings):  # type: ignore[no-untyped-def]
    st = settings.store
    path = Path(st.path).expanduser() if st.path else settings.data_path / "chroma"

    def open_vectors() -> VectorStore:
        return VectorStore(url=st.url, path=path, prefix=st.prefix, timeout_s=st.timeout_s)

    return open_vectors


async def open_library(settings: Settings, models: Mapping[str, str], *,
                       check_models: bool = True) -> Library:
    """Open the catalog, keyword index and blobs now (cheap); the vector store on first use."""
    loop = asyncio.get_running_loop()
    opening = ["the catalog"]
    future = loop.run_in_executor(None, _parts, settings, opening)
    try:
        async with asyncio.timeout(settings.store.timeout_s):
            catalog, keyword, blobs = await asyncio.shield(future)
    except TimeoutError:
        from core.errors import StoreUnavailable

        # The parts may still open after the time-out: close them then, not leak them.
        future.add_done_callback(_close_late)
        raise StoreUnavailable(f"{opening[-1]} did not answer within "
                               f"{settings.store.timeout_s:g} s") from None
    except (OSError, StoreError) as exc:
        from core.errors import from_os_error
        from core.machine import folder_problem

        # "File exists" or SQLite's "unable to open database file" do not say what to fix.
        problem = folder_problem(settings.data_path)
        if problem is not None:
            raise StoreError(problem) from exc
        if isinstance(exc, StoreError):
            raise
        raise from_os_error(exc, "opening the index") from exc
    library = Library(catalog=catalog, keyword=keyword, blobs=blobs,
                      open_vectors=vector_opener(settings), models=models,
                      timeout_s=settings.store.timeout_s,
                      read_workers=settings.store.read_workers, check_models=check_models,
                      sole_user=not settings.catalog.url and not settings.store.url)
    try:
        if catalog.was_empty_file:  # remembered until a repair, not only on this open
            await library.write("recording damage", catalog.set_meta, "needs_repair",
                                "the catalog file was found empty")
        damage = await library.read("reading the catalog", catalog.get_meta, "needs_repair")
        if damage:
            log.warning("%s (%s): items may be missing from the index; run "
                        "`pixrag check --repair` to rebuild it from the vectors",
                        damage, catalog.location)
        if check_models:
            await library.read("checking models", library.check_recorded_models)
    except BaseException:
        await library.aclose()
        raise
    return library

