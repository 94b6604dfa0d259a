"""One bad query among concurrent ones: through the real service (tiny CLIP, real text model,
real Chroma and SQLite), the innocent requests batched with it always succeed."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.app import open_service
from core.config import Secrets
from core.service import PixRAG
from core.types import Hit, Scope, Upload
from tests.cli.helpers import make_settings

NOTES = {
    "pricing.md": b"The enterprise plan costs 40 dollars per seat per month.",
    "holiday.md": b"The office is closed for the public holiday next week.",
    "coffee.md": b"The new coffee machine on the third floor is working again.",
}
QUERIES = ["enterprise plan price", "public holiday", "coffee machine", "seat price",
           "office closed", "third floor", "plan per month", "working again"]


@pytest.fixture
async def svc(tmp_path: Path, tiny_clip: Path) -> AsyncIterator[PixRAG]:
    # A wide batching window so the concurrent queries surely share forward passes.
    settings = make_settings(tmp_path / "data", tiny_clip, PIXRAG_EMBEDDING__MAX_WAIT_MS="300")
    async with open_service(settings, Secrets({})) as service:
        uploads = [Upload(name=n, data=d, source=f"/docs/{n}") for n, d in NOTES.items()]
        report = await service.index_uploads(uploads, "local")
        assert len(report.indexed) == len(NOTES)
        yield service


def _no_unretrieved(caplog: pytest.LogCaptureFixture) -> None:
    gc.collect()  # "... exception was never retrieved" is logged when the object is collected
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


async def test_bad_text_among_concurrent_searches(svc: PixRAG,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    queries = list(QUERIES)
    queries[2] = "coffee \ud800 machine"  # a lone surrogate: the tokenizer cannot encode it
    queries[5] = "third\x00floor"  # NUL: ends an FTS5 string early
    results = await asyncio.gather(*(svc.search(q, Scope("local"), k=3) for q in queries),
                                   return_exceptions=True)
    assert not [r for r in results if isinstance(r, BaseException)]
    by_query = dict(zip(queries, results, strict=True))
    assert isinstance(by_query[queries[2]], list) and isinstance(by_query[queries[5]], list)
    # Normalised, the bad ones still find by their words (the keyword signal).
    coffee: list[Hit] = by_query[queries[2]]  # type: ignore[assignment]
    floor: list[Hit] = by_query[queries[5]]  # type: ignore[assignment]
    assert coffee and coffee[0].name == "coffee.md"
    assert floor and floor[0].name == "coffee.md"
    _no_unretrieved(caplog)


async def test_ask_and_similar_names_are_normalised(svc: PixRAG) -> None:
    answer = await svc.ask("enterprise\x00 plan \udfff price?", Scope("local"))
    assert answer.sources and answer.sources[0].name == "pricing.md"
    from core.errors import UnsupportedImage

    with pytest.raises(UnsupportedImage) as err:
        await svc.similar(b"not an image", Scope("local"), name="shot\ud800\x00.png")
    str(err.value).encode("utf-8")  # printable and encodable everywhere
    assert "shot\ufffd.png" in str(err.value)


async def test_a_bad_item_reaching_the_batcher_fails_alone(
    svc: PixRAG, caplog: pytest.LogCaptureFixture
) -> None:
    """Below the service edge (no normalisation): the CLIP text batcher itself isolates."""
    texts = list(QUERIES)
    texts[4] = "office \ud800 closed"
    results = await asyncio.gather(*(svc.c.clip_texts.submit(t) for t in texts),
                                   return_exceptions=True)
    failed = [n for n, r in enumerate(results) if isinstance(r, BaseException)]
    assert failed == [4]  # the tokenizer rejects it: it fails alone
    assert all(getattr(r, "shape", None) for n, r in enumerate(results) if n != 4)
    _no_unretrieved(caplog)
