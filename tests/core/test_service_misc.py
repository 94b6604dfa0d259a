"""Service features used by the chat adapters: forget_origin, autoindex prefs, feedback,
micro-batching, OCR-backed search (the one test here that pays for OCR)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.app import open_service
from core.config import Pipeline, Secrets
from core.errors import PixragError
from core.machine import gpu_possible
from core.service import PixRAG
from core.types import Origin, Scope, Upload
from tests.cli.helpers import make_settings, noise_bytes
from tests.corpus import png_bytes, text_image


@pytest.fixture
async def svc(tmp_path: Path, tiny_clip: Path) -> AsyncIterator[PixRAG]:
    # A wide batching window so concurrent requests surely meet in one forward pass.
    settings = make_settings(tmp_path / "data", tiny_clip, PIXRAG_EMBEDDING__MAX_WAIT_MS="300")
    async with open_service(settings, Secrets({})) as service:
        yield service


def _att(n: int, message: str, channel: str = "c") -> Upload:
    origin = Origin(platform="slack", channel=channel, message=message, attachment=f"F{n}",
                    author="U1")
    return Upload(name=f"f{n}.png", data=noise_bytes(n), source=f"slack://{message}/F{n}",
                  origin=origin)


async def test_forget_origin_removes_only_that_message(svc: PixRAG) -> None:
    rep = await svc.index_uploads([_att(1, "m1"), _att(2, "m1"), _att(3, "m2")], "T")
    other = await svc.index_uploads([_att(1, "m1")], "T2")  # same message id, other space
    ids = {i.source.rsplit("/", 1)[1]: i.id for i in rep.indexed}

    assert await svc.forget_origin("T", message="m1", attachment="F1") == [ids["F1"]]
    assert await svc.forget_origin("T", message="m1", attachment="F1") == []
    left = {r.id for r in svc.library.catalog.all("T")}
    assert left == {ids["F2"], ids["F3"]}
    assert await svc.forget_origin("T", message="m1") == [ids["F2"]]
    assert {r.id for r in svc.library.catalog.all("T")} == {ids["F3"]}
    assert await svc.forget_origin("T", message="nope") == []
    assert [r.id for r in svc.library.catalog.all("T2")] == [other.indexed[0].id]
    # gone from search too; F1's bytes are still in T2 so its blob stays
    hits = await svc.similar(noise_bytes(1), Scope("T"), k=5)
    assert ids["F1"] not in {h.id for h in hits}
    hit = await svc.item("T2", other.indexed[0].id)
    assert hit is not None and Path(hit.blob or "").is_file()
    assert hit.origin.attachment == "F1" and hit.origin.author == "U1"
    # and the same bytes can be indexed again afterwards, posted in another message (the
    # deleted message itself stays deleted: see test_upload_of_a_deleted_message_is_dropped)
    again = await svc.index_uploads([_att(1, "m9")], "T")
    assert [i.id for i in again.indexed] == [ids["F1"]]


async def test_upload_of_a_deleted_message_is_dropped(svc: PixRAG) -> None:
    """A platform deletion that arrives while the message's files are still downloading
    finds nothing to forget yet; the upload arriving afterwards must not bring it back."""
    assert await svc.forget_origin("T", message="m1", channel="c") == []
    late = await svc.index_uploads([_att(1, "m1"), _att(2, "m2")], "T")
    assert [i.source for i in late.indexed] == ["slack://m2/F2"]
    assert [s.source for s in late.skipped] == ["slack://m1/F1"]
    assert "deleted" in late.skipped[0].reason
    # Another space, another channel, or a user's own /forget (a scope) block nothing.
    assert len((await svc.index_uploads([_att(1, "m1")], "T2")).indexed) == 1
    assert len((await svc.index_uploads([_att(3, "m1", channel="c2")], "T")).indexed) == 1
    await svc.forget_origin("T", message="m4", scope=Scope("T", admin=True))
    assert len((await svc.index_uploads([_att(4, "m4")], "T")).indexed) == 1


async def test_autoindex_prefs(svc: PixRAG) -> None:
    assert await svc.autoindex_channels("S") == set()
    await svc.set_autoindex("S", "c1", True)
    await svc.set_autoindex("S", "c2", True)
    await svc.set_autoindex("S", "c2", True)  # idempotent
    await svc.set_autoindex("X", "c9", True)
    assert await svc.autoindex_channels("S") == {"c1", "c2"}
    await svc.set_autoindex("S", "c1", False)
    await svc.set_autoindex("S", "c3", False)  # turning off what was never on is fine
    assert await svc.autoindex_channels("S") == {"c2"}
    assert await svc.autoindex_channels("X") == {"c9"}


async def test_feedback_round_trip(svc: PixRAG) -> None:
    rep = await svc.index_uploads([_att(1, "m1"), _att(2, "m1")], "S")
    a, b = (i.id for i in rep.indexed)
    await svc.record_feedback("S", question="where is the cat?", verdict="up",
                              source_ids=[a, b], user="U1", platform="slack")
    await svc.record_feedback("S", question="pricing slide", verdict="down",
                              source_ids=[b, "gone"], user="U2", platform="slack")
    await svc.record_feedback("D", question="other space", verdict="up", source_ids=[],
                              user="U3", platform="discord")
    with pytest.raises(PixragError):
        await svc.record_feedback("S", question="q", verdict="meh",  # type: ignore[arg-type]
                                  source_ids=[], user="U1", platform="slack")
    names = {a: "f1.png", b: "f2.png"}
    assert await svc.export_feedback("S") == [
        {"query": "where is the cat?", "verdict": "up", "space": "S", "platform": "slack",
         "target": [names[a], names[b]]},
        {"query": "pricing slide", "verdict": "down", "space": "S", "platform": "slack",
         "target": [], "rejected": [names[b]]},
    ]
    every = await svc.export_feedback()
    assert [e["space"] for e in every] == ["S", "S", "D"]


async def test_concurrent_requests_are_micro_batched(svc: PixRAG) -> None:
    n = 8
    batcher = svc.c.clip_images
    start = batcher.batches
    rep = await svc.index_uploads([_att(i, f"m{i}") for i in range(n)], "S")
    assert len(rep.indexed) == n
    indexed_passes = batcher.batches - start
    assert 1 <= indexed_passes < n

    queries = svc.c.clip_query_images  # queries batch on their own, ahead of indexing
    start = queries.batches
    results = await asyncio.gather(*(svc.similar(noise_bytes(i), Scope("S"), k=1)
                                     for i in range(n)))
    assert [r[0].id for r in results] == [i.id for i in rep.indexed]
    assert 1 <= queries.batches - start < n

    texts = svc.c.clip_texts
    start = texts.batches
    await asyncio.gather(*(svc.search(f"query {i}", Scope("S")) for i in range(n)))
    assert 1 <= texts.batches - start < n


async def test_embedding_sizes_shape_the_pipeline(tmp_path: Path, tiny_clip: Path) -> None:
    # Batches never exceed [embedding] batch_size, no more than queue_size files are in
    # flight (so with a queue of 2 no batch holds more than 2 images), and the decode pool has
    # preprocess_workers threads; "auto" on this machine is the CPU's sizes.
    settings = make_settings(tmp_path / "data", tiny_clip, PIXRAG_EMBEDDING__MAX_WAIT_MS="300",
                             PIXRAG_EMBEDDING__BATCH_SIZE="3", PIXRAG_EMBEDDING__QUEUE_SIZE="2",
                             PIXRAG_EMBEDDING__PREPROCESS_WORKERS="5")
    async with open_service(settings, Secrets({})) as service:
        c = service.c
        assert (c.clip_images.max_batch, c.clip_texts.max_batch) == (3, 3)
        assert (c.pools.pipeline.queue, c.pools.decode._max_workers) == (2, 5)
        seen: list[int] = []
        embed = c.clip_images._fn

        def counted(px: list) -> list:
            seen.append(len(px))
            return embed(px)

        c.clip_images._fn = counted  # type: ignore[method-assign]
        folder = tmp_path / "photos"
        folder.mkdir()
        for i in range(6):
            (folder / f"p{i}.png").write_bytes(noise_bytes(i))
        report = await service.index_paths([folder], "S")
        assert len(report.indexed) == 6 and sum(seen) >= 6 and max(seen) <= 2, seen
    auto = make_settings(tmp_path / "data2", tiny_clip)
    async with open_service(auto, Secrets({})) as service:
        sizes = service.c.pools.pipeline
        assert sizes == auto.embedding.pipeline()
        if not gpu_possible():
            assert sizes == Pipeline(batch=32, workers=2, queue=64)
        assert service.c.clip_images.max_batch == sizes.batch
        assert service.c.pools.decode._max_workers == sizes.workers


async def test_gpu_sizes_fall_back_when_clip_lands_on_the_cpu(
        tmp_path: Path, tiny_clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A GPU device node (or not Linux) makes "auto" pick the GPU's sizes without importing
    # torch; when CLIP then loads on the CPU all the same, the CPU's sizes apply from then on.
    import core.machine
    import core.models.clip

    monkeypatch.setattr(core.machine, "gpu_possible", lambda: True)
    monkeypatch.setattr(core.models.clip, "gpu_possible", lambda: True)
    settings = make_settings(tmp_path / "data", tiny_clip)
    async with open_service(settings, Secrets({})) as service:
        c = service.c
        assert (c.pools.pipeline.batch, c.clip_images.max_batch) == (256, 256)
        await service.index_uploads([_att(0, "m0")], "S")
        assert (await c.clip()).device == "cpu"
        assert c.pools.pipeline == Pipeline(batch=32, workers=c.pools.pipeline.workers, queue=64)
        assert {b.max_batch for b in (c.clip_images, c.clip_query_images, c.clip_texts)} == {32}


async def test_ocr_text_is_searchable(tmp_path: Path, tiny_clip: Path) -> None:
    """The one OCR test: words in a screenshot are found by keyword and text search."""
    settings = make_settings(tmp_path / "data", tiny_clip, PIXRAG_INDEX__OCR="true")
    shot = png_bytes(text_image("Error 0x80070005\nAccess denied"))
    async with open_service(settings, Secrets({})) as svc:
        rep = await svc.index_uploads(
            [Upload("shot.png", shot, "local:shot.png"),
             Upload("noise.png", noise_bytes(3), "local:noise.png")], "S")
        assert len(rep.indexed) == 2 and not rep.failed
        [row] = svc.library.catalog.find("S", source="local:shot.png")
        assert row.stage == 1  # findable at once by image; its text follows
        await svc.wait_enriched()
        [row] = svc.library.catalog.find("S", source="local:shot.png")
        assert "0x80070005" in row.text
        hits = await svc.search("0x80070005", Scope("S"))
        assert hits[0].source == "local:shot.png"
        assert "keyword" in hits[0].signals and "0x80070005" in hits[0].text


async def test_forget_origin_narrowed_by_channel(svc: PixRAG) -> None:
    # Slack's ts is unique per channel only: the same ts in two channels are two messages.
    rep = await svc.index_uploads([_att(4, "1700.1", "C1"), _att(5, "1700.1", "C2")], "T")
    by_channel = {i.source.rsplit("/", 1)[1]: i.id for i in rep.indexed}
    assert await svc.forget_origin("T", message="1700.1", channel="C2") == [by_channel["F5"]]
    assert {r.id for r in svc.library.catalog.all("T")} == {by_channel["F4"]}


async def test_forget_finds_deleted_files_and_folders_by_relative_path(
        svc: PixRAG, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Removing what was deleted from disk is what forget is often for: a relative path must
    # still name it, file or folder, once it is gone.
    pics = tmp_path / "pics"
    (pics / "old").mkdir(parents=True)
    for n, rel in enumerate(("keep.png", "gone.png", "old/a.png", "old/b.png")):
        (pics / rel).write_bytes(noise_bytes(n + 1))
    report = await svc.index_paths([pics], "local")
    assert len(report.indexed) == 4
    monkeypatch.chdir(tmp_path)
    (pics / "gone.png").unlink()
    for f in (pics / "old").iterdir():
        f.unlink()
    (pics / "old").rmdir()

    assert len(await svc.forget("local", "pics/gone.png")) == 1
    assert len(await svc.forget("local", "pics/old")) == 2
    assert (await svc.stats("local")).items == 1
    with pytest.raises(PixragError, match="matches"):
        await svc.forget("local", "pics/never-was.png")
