"""Vector storage in ChromaDB: embedded ``PersistentClient`` by default, ``HttpClient`` for a
Chroma server shared by several bot processes.

Tenancy is enforced HERE: every query, get and delete takes a ``space`` and filters on it, so no
caller can forget to. Collections record the model id and dimension that made their vectors;
opening one with another model is :class:`ModelMismatch`, never a silent mix of vector spaces.
All methods block: call them from an executor.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from core.errors import ModelMismatch, StoreError

log = logging.getLogger(__name__)

Metadata = Mapping[str, str | int | float | bool]


@dataclass(frozen=True)
class VectorHit:
    id: str
    item: str  # the item a vector belongs to (tiles and passages share their item's id)
    similarity: float  # cosine similarity, higher is better
    metadata: Mapping[str, Any]
    document: str | None = None


def _client(url: str, path: Path) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    try:
        if url:
            parsed = urlparse(url if "://" in url else f"http://{url}")
            return chromadb.HttpClient(
                host=parsed.hostname or "localhost",
                port=parsed.port or (443 if parsed.scheme == "https" else 8000),
                ssl=parsed.scheme == "https",
                settings=chroma_settings,
            )
        path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(path), settings=chroma_settings)
    except Exception as exc:  # chromadb raises assorted types for connection problems
        where = url or str(path)
        raise StoreError(f"cannot open the Chroma store at {where}: {exc}") from exc


class VectorStore:
    def __init__(self, *, url: str = "", path: Path, prefix: str = "pixrag") -> None:
        self.location = url or str(path)
        self._client = _client(url, path)
        self._prefix = prefix
        self._cols: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.max_batch = int(self._client.get_max_batch_size())

    def open(self, channel: str, *, model: str, dim: int, reindex_hint: str) -> None:
        """Open (or create) the collection for ``channel`` ("clip" or "text")."""
        name = f"{self._prefix}_{channel}"
        try:
            col = self._client.get_or_create_collection(
                name,
                embedding_function=None,  # we always pass vectors; the default would download
                metadata={"model": model, "dim": dim},
                configuration={"hnsw": {"space": "cosine"}},
            )
        except Exception as exc:
            raise StoreError(f"cannot open collection {name} at {self.location}: {exc}") from exc
        meta = col.metadata or {}
        if meta.get("model") != model or int(meta.get("dim", dim)) != dim:
            raise ModelMismatch(
                f"the {channel} index at {self.location} was built with model "
                f"{meta.get('model')!r} ({meta.get('dim')}-dim), but the configured model is "
                f"{model!r} ({dim}-dim). Re-embed everything with the new model: "
                f"`{reindex_hint}` (or set the old model back in the config)."
            )
        self._cols[channel] = col

    def _col(self, channel: str) -> Any:
        try:
            return self._cols[channel]
        except KeyError:
            raise StoreError(f"collection {channel!r} is not open") from None

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
        col = self._col(channel)
        for start in range(0, len(ids), self.max_batch):
            end = start + self.max_batch
            try:
                col.upsert(
                    ids=list(ids[start:end]),
                    embeddings=np.asarray(vectors[start:end], dtype=np.float32),
                    metadatas=[dict(m) for m in metadatas[start:end]],
                    documents=list(documents[start:end]) if documents is not None else None,
                )
            except Exception as exc:
                raise StoreError(f"writing to the vector store failed: {exc}") from exc

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
        where = _where(space, audiences)
        try:
            res = col.query(query_embeddings=[np.asarray(vector, dtype=np.float32)],
                            n_results=max(1, n), where=where,
                            include=["metadatas", "distances", "documents"])
        except Exception as exc:
            raise StoreError(f"vector search failed: {exc}") from exc
        hits = []
        docs = (res.get("documents") or [None])[0] or [None] * len(res["ids"][0])
        for vid, dist, meta, doc in zip(res["ids"][0], res["distances"][0], res["metadatas"][0],
                                        docs, strict=True):
            meta = meta or {}
            if meta.get("space") != space:  # belt and braces: never trust a filter blindly
                continue
            hits.append(VectorHit(vid, str(meta.get("item", vid)), 1.0 - float(dist), meta, doc))
        return hits

    def get_vectors(self, channel: str, *, space: str,
                    items: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored vectors of the given items' own records (id == item id)."""
        if not items:
            return {}
        col = self._col(channel)
        res = col.get(ids=list(items), where={"space": space}, include=["embeddings"])
        return {i: np.asarray(e, dtype=np.float32)
                for i, e in zip(res["ids"], res["embeddings"], strict=True)}

    def delete_items(self, space: str, items: Sequence[str]) -> None:
        if not items:
            return
        for channel, col in self._cols.items():
            for start in range(0, len(items), 500):
                chunk = list(items[start:start + 500])
                try:
                    col.delete(where={"$and": [{"space": space}, {"item": {"$in": chunk}}]})
                except Exception as exc:
                    raise StoreError(f"deleting from the {channel} index failed: {exc}") from exc

    def close(self) -> None:
        """Release the client. chromadb never closes an HttpClient's HTTP sessions itself (one
        for the client, one for its admin client; each HttpClient gets systems of its own, so
        nothing else uses them): close them, or their sockets leak (ResourceWarning)."""
        client, self._cols = self._client, {}
        sessions = [getattr(getattr(c, "_server", None), "_session", None)
                    for c in (client, getattr(client, "_admin_client", None)) if c is not None]
        try:
            client.close()  # refcounted: an embedded store shared in this process stays open
            for session in sessions:
                if session is not None:
                    session.close()
        except Exception as exc:  # closing must never mask the error that ended the run
            log.debug("closing the Chroma client failed: %s", exc)

    def count(self, channel: str) -> int:
        return int(self._col(channel).count())

    def drop(self, channel: str) -> None:
        """Delete a whole collection (used by re-indexing with a new model)."""
        name = f"{self._prefix}_{channel}"
        try:
            self._client.delete_collection(name)
        except Exception as exc:  # missing collection is fine
            log.debug("drop %s: %s", name, exc)
        self._cols.pop(channel, None)


def _where(space: str, audiences: Sequence[str] | None) -> dict[str, Any]:
    if audiences is None:
        return {"space": space}
    return {"$and": [{"space": space}, {"audience": {"$in": list(audiences)}}]}
