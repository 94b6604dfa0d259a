"""Vector storage in ChromaDB: embedded ``PersistentClient`` by default, ``HttpClient`` for a
Chroma server shared by several bot processes or hosts.

Tenancy is enforced HERE too (the library filters first): every query, get and delete takes a
``space`` and filters on it. A collection records the model id and dimension that made its
vectors; attaching one with another model is :class:`ModelMismatch`, never a silent mix of
vector spaces. Collections are created on the first write, with the dimension of the vectors
written, so opening the store needs no model loaded. Every call to a Chroma server has a
timeout: a frozen server is :class:`StoreUnavailable`, not a hang. All methods block: call
them from an executor.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from core.errors import (
    CollectionGone,
    DiskFull,
    ModelMismatch,
    StoreError,
    StoreUnavailable,
    from_os_error,
)
from core.library.folderlock import FolderLock

log = logging.getLogger(__name__)

Metadata = Mapping[str, str | int | float | bool]

#: Free space an embedded store must have before it writes. Embedded Chroma does not fail
#: when the disk fills during its own write: its native code retries forever while holding
#: Python's interpreter lock, so the whole process freezes (no time limit, no Ctrl-C or
#: SIGTERM gets through). Refusing to write with this little room left is the only defence.
MIN_FREE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class VectorHit:
    id: str
    item: str  # the item a vector belongs to (tiles and passages share their item's id)
    similarity: float  # cosine similarity, higher is better
    metadata: Mapping[str, Any]
    document: str | None = None


@dataclass(frozen=True)
class VectorRecord:
    id: str
    metadata: Mapping[str, Any]
    document: str | None = None
    vector: np.ndarray | None = None


def _is_unavailable(exc: BaseException) -> bool:
    """Connection refused, reset or timed out (httpx under chromadb), not a bad request."""
    names = {type(e).__name__ for e in _chain(exc)}
    return bool(names & {"ConnectError", "ConnectTimeout", "ReadTimeout", "WriteTimeout",
                         "PoolTimeout", "RemoteProtocolError", "ReadError", "WriteError",
                         "TimeoutException", "NetworkError", "ConnectionError",
                         "ConnectionRefusedError", "TimeoutError"})


def _is_missing_collection(exc: BaseException) -> bool:
    """Chroma's answer for a collection deleted under a client that still holds it."""
    return type(exc).__name__ == "NotFoundError" or (
        "collection" in str(exc).lower() and "does not exist" in str(exc))


def _connect_reason(exc: BaseException) -> str:
    """What the network said ("Connection refused", "Name or service not known"), not the
    wrapper's type (chromadb's ValueError "Could not connect to a Chroma server")."""
    for e in reversed(_chain(exc)):
        text = str(e).strip()
        if _is_unavailable(e) and text:
            return text.removeprefix("[Errno ").split("] ", 1)[-1][:200]
    return type(exc).__name__


def _chain(exc: BaseException | None) -> list[BaseException]:
    out: list[BaseException] = []
    while exc is not None and len(out) < 10:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


def _parse(url: str) -> Any:
    """A server URL as written in the config, where ``host:8000`` means http."""
    return urlparse(url if "://" in url else f"http://{url}")


def _include(documents: bool, vectors: bool) -> list[str]:
    """What a read of records asks Chroma for."""
    return ["metadatas"] + (["documents"] if documents else []) + \
        (["embeddings"] if vectors else [])


def redact_url(url: str) -> str:
    """A server URL fit for messages and logs: a password written into it
    (``http://user:secret@host:8000``) is left out, the user stays."""
    parsed = _parse(url)
    if parsed.password is None:
        return url
    host = parsed.netloc.rsplit("@", 1)[-1]
    user = f"{parsed.username}@" if parsed.username else ""
    return parsed._replace(netloc=user + host).geturl()


def http_client(url: str, timeout_s: float) -> Any:
    """A client of the Chroma server at ``url`` whose every request has a time limit.

    chromadb's constructor already makes requests, with no time limit, before any can be set:
    against a server that accepts connections and never answers (stopped, stalled) it would
    wait forever, and a command could not even exit. So it runs on a daemon thread that is
    left behind if the server does not answer in ``timeout_s``."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    parsed = _parse(url)
    result: list[Any] = []
    failure: list[BaseException] = []

    def connect() -> None:
        try:
            result.append(chromadb.HttpClient(
                host=parsed.hostname or "localhost",
                port=parsed.port or (443 if parsed.scheme == "https" else 8000),
                ssl=parsed.scheme == "https",
                settings=ChromaSettings(anonymized_telemetry=False, allow_reset=False),
            ))
        except BaseException as exc:
            failure.append(exc)

    worker = threading.Thread(target=connect, daemon=True, name="pixrag-chroma-connect")
    worker.start()
    worker.join(timeout_s)
    if failure:
        raise failure[0]
    if not result:
        raise StoreUnavailable(f"the vector store at {redact_url(url)} is not responding "
                               f"(connecting: no answer within {timeout_s:g} s)")
    client = result[0]
    _set_timeouts(client, timeout_s)
    return client


def _client(url: str, path: Path, timeout_s: float) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    try:
        if url:
            return http_client(url, timeout_s)
        chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
        return chromadb.PersistentClient(path=str(path), settings=chroma_settings)
    except StoreError:
        raise
    except Exception as exc:  # chromadb raises assorted types for connection problems
        where = redact_url(url) if url else str(path)
        if url and _is_unavailable(exc):
            raise StoreUnavailable(f"the vector store at {where} is not reachable "
                                   f"({_connect_reason(exc)})") from exc
        raise StoreError(f"cannot open the vector store at {where}: {exc}") from exc


def _lock_folder(path: Path) -> FolderLock:
    try:
        path.mkdir(parents=True, exist_ok=True)
        return FolderLock(path)
    except OSError as exc:
        raise from_os_error(exc, f"opening the vector store at {path}") from exc


def _set_timeouts(client: Any, timeout_s: float) -> None:
    """chromadb's HTTP client waits forever (``timeout=None``): a frozen server would hang
    every search. Give its httpx sessions a real timeout."""
    import httpx

    for c in (client, getattr(client, "_admin_client", None)):
        session = getattr(getattr(c, "_server", None), "_session", None)
        if session is not None:
            session.timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0))


class VectorStore:
    def __init__(self, *, url: str = "", path: Path, prefix: str = "pixrag",
                 timeout_s: float = 30.0) -> None:
        self.location = redact_url(url) if url else str(path)  # shown in messages and stats
        self.remote = bool(url)
        self._path = path
        # Embedded: this process alone, from before Chroma opens the folder (two processes
        # creating it at once also failed with "database is locked") until close().
        self._folder_lock = None if url else _lock_folder(path)
        try:
            self._client = _client(url, path, timeout_s)
        except BaseException:
            self._release_folder()
            raise
        self.prefix = prefix
        self._specs: dict[str, tuple[str, str]] = {}  # channel -> (collection name, model)
        self._cols: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.max_batch = int(self._guard("connect", self._client.get_max_batch_size))

    def _guard(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (StoreError, ModelMismatch):
            raise
        except Exception as exc:
            if _is_unavailable(exc):
                raise StoreUnavailable(
                    f"the vector store at {self.location} is not responding ({what}): "
                    f"{type(exc).__name__}") from exc
            if _is_missing_collection(exc):
                with self._lock:
                    self._cols.clear()  # cached handles of what may be gone
                raise CollectionGone(f"{what} in the vector store at {self.location} failed: "
                                     "the collection no longer exists") from exc
            raise StoreError(f"{what} in the vector store at {self.location} failed: "
                             f"{exc}") from exc

    def _room(self, what: str) -> None:
        """DiskFull, before embedded Chroma writes, when its disk has almost no room left
        (see :data:`MIN_FREE_BYTES`)."""
        if self.remote:
            return
        try:
            free = shutil.disk_usage(self._path).free
        except OSError as exc:
            raise from_os_error(exc, what) from exc
        if free < MIN_FREE_BYTES:
            raise DiskFull(
                f"no space left on device while {what}: {free // 1024} KiB free under "
                f"{self._path}, and the embedded vector store needs at least "
                f"{MIN_FREE_BYTES // (1024 * 1024)} MiB to write safely")

    # collections ----------------------------------------------------------------------------
    def default_name(self, channel: str) -> str:
        return f"{self.prefix}_{channel}"

    def attach(self, channel: str, name: str, *, model: str) -> None:
        """Use collection ``name`` for ``channel``, built by ``model``. It may not exist yet:
        it is created by the first write."""
        with self._lock:
            self._specs[channel] = (name, model)
            self._cols.pop(channel, None)

    def _col(self, channel: str, *, create_dim: int | None = None) -> Any:
        col = self._cols.get(channel)
        if col is not None:
            return col
        try:
            name, model = self._specs[channel]
        except KeyError:
            raise StoreError(f"vector channel {channel!r} is not attached") from None
        col = self._get(name)
        if col is None and create_dim is not None:
            col = self._guard("create a collection", self._client.get_or_create_collection,
                              name, embedding_function=None,  # we pass vectors; the default
                              metadata={"model": model, "dim": create_dim},  # would download
                              configuration={"hnsw": {"space": "cosine"}})
        if col is None:
            return None
        meta = col.metadata or {}
        if meta.get("model") != model:
            raise ModelMismatch(
                f"the {channel} index at {self.location} was built with model "
                f"{meta.get('model')!r} ({meta.get('dim')}-dim), but the configured model is "
                f"{model!r}. Re-embed everything with the new model: `pixrag reindex` "
                f"(or set the old model back in the config).")
        with self._lock:
            self._cols[channel] = col
        return col

    def _get(self, name: str) -> Any:
        try:
            return self._client.get_collection(name, embedding_function=None)
        except Exception as exc:
            if _is_unavailable(exc):
                raise StoreUnavailable(f"the vector store at {self.location} is not responding "
                                       f"({type(exc).__name__})") from exc
            return None  # chromadb raises NotFoundError/ValueError for a missing collection

    def built_with(self, name: str) -> str | None:
        """The model recorded on collection ``name`` (None when it does not exist)."""
        col = self._get(name)
        return None if col is None else str((col.metadata or {}).get("model"))

    def spec(self, channel: str) -> tuple[str, str]:
        """``(collection name, model)`` attached to ``channel``."""
        return self._specs[channel]

    def check(self, channel: str) -> None:
        """Raise ModelMismatch now if the channel's collection was built by another model."""
        self._col(channel)

    def collection_dim(self, channel: str) -> int | None:
        col = self._col(channel)
        if col is None:
            return None
        dim = (col.metadata or {}).get("dim")
        return int(dim) if dim is not None else None

    def collections(self) -> list[str]:
        return [c if isinstance(c, str) else c.name
                for c in self._guard("list collections", self._client.list_collections)]

    def drop_collection(self, name: str) -> None:
        try:
            self._client.delete_collection(name)
        except Exception as exc:  # a missing collection is fine
            log.debug("drop %s: %s", name, exc)
        with self._lock:
            for channel, (n, _) in list(self._specs.items()):
                if n == name:
                    self._cols.pop(channel, None)

    # vectors ------------------------------------------------------------------------------
    def upsert(
        self,
        channel: str,
        ids: Sequence[str],
        vectors: np.ndarray,
        metadatas: Sequence[Metadata],
        documents: Sequence[str] | None = None,
    ) -> None:
        if not ids:
            return
        for m in metadatas:
            if "space" not in m or "item" not in m:
                raise StoreError("every vector needs 'space' and 'item' metadata")
        vectors = np.asarray(vectors, dtype=np.float32)
        self._room("writing vectors")
        col = self._col(channel, create_dim=int(vectors.shape[1]))
        for start in range(0, len(ids), self.max_batch):
            end = start + self.max_batch
            self._guard("writing", col.upsert,
                        ids=list(ids[start:end]), embeddings=vectors[start:end],
                        metadatas=[dict(m) for m in metadatas[start:end]],
                        documents=list(documents[start:end]) if documents is not None else None)

    def query(
        self,
        channel: str,
        vector: np.ndarray,
        *,
        space: str,
        audiences: Sequence[str] | None,
        n: int,
    ) -> list[VectorHit]:
        """Nearest vectors of ``space`` visible to ``audiences`` (None = all), best first."""
        col = self._col(channel)
        if col is None:  # nothing written yet
            return []
        res = self._guard("searching", col.query,
                          query_embeddings=[np.asarray(vector, dtype=np.float32)],
                          n_results=max(1, n), where=_where(space, audiences),
                          include=["metadatas", "distances", "documents"])
        hits = []
        docs = (res.get("documents") or [None])[0] or [None] * len(res["ids"][0])
        for vid, dist, meta, doc in zip(res["ids"][0], res["distances"][0], res["metadatas"][0],
                                        docs, strict=True):
            meta = meta or {}
            if meta.get("space") != space:  # belt and braces: never trust a filter blindly
                continue
            if audiences is not None and meta.get("audience") not in audiences:
                continue
            hits.append(VectorHit(vid, str(meta.get("item", vid)), 1.0 - float(dist), meta, doc))
        return hits

    def get_vectors(self, channel: str, *, space: str,
                    items: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored vectors of the given items' own records (id == item id)."""
        col = self._col(channel)
        if not items or col is None:
            return {}
        res = self._guard("reading", col.get, ids=list(items), where={"space": space},
                          include=["embeddings"])
        return {i: np.asarray(e, dtype=np.float32)
                for i, e in zip(res["ids"], res["embeddings"], strict=True)}

    def records(self, channel: str, *, items: Sequence[str] | None = None,
                ids: Sequence[str] | None = None, documents: bool = False,
                vectors: bool = False) -> list[VectorRecord]:
        """Stored records: all of them, those of ``items`` (by item metadata) or by vector id."""
        col = self._col(channel)
        if col is None:
            return []
        include = _include(documents, vectors)
        out: list[VectorRecord] = []
        if items is not None or ids is not None:
            keys = list(items if items is not None else ids or [])
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                if items is not None:
                    res = self._guard("reading", col.get, where={"item": {"$in": chunk}},
                                      include=include)
                else:
                    res = self._guard("reading", col.get, ids=chunk, include=include)
                out += _records(res, documents, vectors)
            return out
        total = int(self._guard("counting", col.count))
        for offset in range(0, total, 1000):
            out += self.records_page(channel, offset, 1000, documents=documents,
                                     vectors=vectors)
        return out

    def records_page(self, channel: str, offset: int, limit: int, *, documents: bool = False,
                     vectors: bool = False) -> list[VectorRecord]:
        """``limit`` stored records from ``offset`` on (in storage order): a large collection
        read a page at a time, never all of it in memory."""
        col = self._col(channel)
        if col is None:
            return []
        include = _include(documents, vectors)
        res = self._guard("reading", col.get, include=include, limit=limit, offset=offset)
        return _records(res, documents, vectors)

    def delete_items(self, space: str, items: Sequence[str]) -> None:
        if not items:
            return
        self._room("deleting vectors")  # a delete writes too
        for channel in list(self._specs):
            col = self._col(channel)
            if col is None:
                continue
            for start in range(0, len(items), 500):
                chunk = list(items[start:start + 500])
                self._guard(f"deleting from the {channel} index", col.delete,
                            where={"$and": [{"space": space}, {"item": {"$in": chunk}}]})

    def delete_ids(self, channel: str, ids: Sequence[str]) -> None:
        col = self._col(channel)
        if col is None or not ids:
            return
        self._room("deleting vectors")
        for start in range(0, len(ids), 500):
            self._guard(f"deleting from the {channel} index", col.delete,
                        ids=list(ids[start:start + 500]))

    def count(self, channel: str) -> int:
        col = self._col(channel)
        return 0 if col is None else int(self._guard("counting", col.count))

    def close(self) -> None:
        """Release the client. chromadb never closes an HttpClient's HTTP sessions itself (one
        for the client, one for its admin client; each HttpClient gets systems of its own, so
        nothing else uses them): close them, or their sockets leak (ResourceWarning)."""
        client, self._cols = self._client, {}
        close_client(client)
        self._release_folder()

    def _release_folder(self) -> None:
        if self._folder_lock is not None:
            self._folder_lock.release()


def close_client(client: Any) -> None:
    """Close a chromadb client and its HTTP sessions."""
    sessions = [getattr(getattr(c, "_server", None), "_session", None)
                for c in (client, getattr(client, "_admin_client", None)) if c is not None]
    try:
        client.close()  # refcounted: an embedded store shared in this process stays open
        for session in sessions:
            if session is not None:
                session.close()
    except Exception as exc:  # closing must never mask the error that ended the run
        log.debug("closing the Chroma client failed: %s", exc)


def _records(res: Mapping[str, Any], documents: bool, vectors: bool) -> list[VectorRecord]:
    ids = res["ids"]
    metas = res.get("metadatas") or [{}] * len(ids)
    docs = (res.get("documents") if documents else None) or [None] * len(ids)
    embs = res.get("embeddings") if vectors else None
    if embs is None:
        embs = [None] * len(ids)
    return [VectorRecord(i, m or {}, d, None if e is None else np.asarray(e, dtype=np.float32))
            for i, m, d, e in zip(ids, metas, docs, embs, strict=True)]


def _where(space: str, audiences: Sequence[str] | None) -> dict[str, Any]:
    if audiences is None:
        return {"space": space}
    return {"$and": [{"space": space}, {"audience": {"$in": list(audiences)}}]}
