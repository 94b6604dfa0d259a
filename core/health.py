"""``pixrag health``: is this installation able to serve? Checks without side effects.

A container health check runs this next to a live bot, so it must change nothing: it never
creates the data directory, opens the SQLite files read-only, never creates a Chroma
collection and never downloads a model (the caller sets ``HF_HUB_OFFLINE``). Each part
reports ``ok`` and a one-line ``detail``; the whole is healthy when every part is.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import Secrets, Settings
from core.errors import PixragError


@dataclass(frozen=True)
class PartStatus:
    ok: bool
    detail: str
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail, "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class Health:
    parts: dict[str, PartStatus]

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.parts.values())

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "parts": {n: p.to_json() for n, p in self.parts.items()}}


def _read_only(path: Path) -> sqlite3.Connection:
    # A WAL database with a live writer has its -wal file: read it with mode=ro (SQLite then
    # creates and writes nothing). Without one nobody is writing, and even a read-only open
    # would create -wal/-shm files; immutable=1 reads the file as it is.
    wal = path.with_name(path.name + "-wal").exists()
    query = "mode=ro" if wal else "immutable=1"
    return sqlite3.connect(f"{path.resolve().as_uri()}?{query}", uri=True, timeout=5.0)


def _count(path: Path, sql: str, params: tuple[Any, ...] = ()) -> int:
    if not path.is_file():
        # A data folder given as a file's path is a mistake to name, not an empty index.
        above = next((p for p in path.parents if p.exists() or p.is_symlink()), None)
        if above is not None and not above.is_dir():
            raise NotADirectoryError(f"{above} is a file, not a folder (the data folder "
                                     "is given by --data-dir, PIXRAG_DATA_DIR or data_dir)")
        raise FileNotFoundError(f"{path} does not exist (nothing indexed yet?)")
    db = _read_only(path)
    try:
        return int(db.execute(sql, params).fetchone()[0])
    finally:
        db.close()


def check_catalog(settings: Settings) -> str:
    if settings.catalog.url:  # server mode: one read on PostgreSQL, nothing created
        from core.library.pg_database import PgDatabase

        db = PgDatabase(settings.catalog.url, statement_timeout_s=settings.store.timeout_s)
        try:
            items = int(db.fetch("health", "SELECT count(*) FROM items")[0][0])
        finally:
            db.close()
        msg = f"{items} items in {db.url}"
        if settings.blobs.url:
            from core.library.s3_blobs import S3BlobStore

            # check_bucket: one HEAD on the bucket; the cache folder is only named here.
            S3BlobStore(settings.blobs.url, settings.data_path / "blob-cache",
                        endpoint_url=settings.blobs.endpoint_url or None).close()
            msg += f"; blobs at {settings.blobs.url}"
        return msg
    data = settings.data_path
    items = _count(data / "catalog.sqlite", "SELECT count(*) FROM items")
    _count(data / "keyword.sqlite", "SELECT count(*) FROM sqlite_master")
    return f"{items} items in {data / 'catalog.sqlite'}"


def check_store(settings: Settings) -> str:
    if settings.store.url:
        from core.library.vectors import close_client, http_client, redact_url

        url = settings.store.url
        # Time-limited like every store call: a frozen server fails the check, never hangs it.
        client = http_client(url, settings.store.timeout_s)
        try:
            client.heartbeat()
        finally:
            close_client(client)
        return f"Chroma server {redact_url(url)} answers"
    path = Path(settings.store.path).expanduser() if settings.store.path \
        else settings.data_path / "chroma"
    # The embedded store's own catalog, read-only: opening a PersistentClient would write.
    n = _count(path / "chroma.sqlite3", "SELECT count(*) FROM collections WHERE name LIKE ?",
               (f"{settings.store.prefix}_%",))
    if n == 0:
        raise LookupError(f"no PixRAG collections in {path} (nothing indexed yet?)")
    return f"{n} collections in {path}"


def check_model(settings: Settings, secrets: Secrets) -> str:
    from core.models.clip import ClipEmbedder
    from core.models.lighttext import batches_in_torch
    from core.models.textembed import build_text_embedder

    # The stack the bots and indexing run (a lone query would run in numpy without torch).
    batches_in_torch()
    emb = settings.embedding
    clip = ClipEmbedder(emb.model, device=emb.device, dtype=emb.dtype)
    clip.embed_texts(["health check"])  # loaded is not enough: one forward pass
    # The device, its precision and the batch size indexing uses there: on a GPU host, what
    # shows that the GPU is the one at work.
    batch = emb.pipeline(accelerated=clip.device != "cpu").batch
    detail = (f"CLIP {emb.model} on {clip.device} ({clip.dtype_name}, batches of {batch}), "
              f"dim {clip.dim}")
    if settings.text.provider == "local":
        text = build_text_embedder(settings.text, secrets)
        text.embed_batch(["health check"])
        detail += f"; text {text.model_id}, dim {text.dim}"
    return detail


def run_checks(settings: Settings, secrets: Secrets, *, model: bool = True) -> Health:
    """Every check, each isolated: one failing part does not hide the others."""
    checks: dict[str, Callable[[], str]] = {
        "store": lambda: check_store(settings),
        "catalog": lambda: check_catalog(settings),
    }
    if model:
        checks["model"] = lambda: check_model(settings, secrets)
    parts: dict[str, PartStatus] = {}
    for name, check in checks.items():
        start = time.monotonic()
        try:
            detail = check()
            parts[name] = PartStatus(True, detail, time.monotonic() - start)
        except (PixragError, OSError, LookupError, sqlite3.Error) as exc:
            parts[name] = PartStatus(False, _first_line(exc), time.monotonic() - start)
        except Exception as exc:  # chromadb and torch raise assorted types: report, go on
            parts[name] = PartStatus(False, f"{type(exc).__name__}: {_first_line(exc)}",
                                     time.monotonic() - start)
    return Health(parts)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:500]
