"""Tenancy: spaces never see each other; private-channel items stay in their channel."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.app import open_service
from core.config import Secrets
from core.service import PixRAG
from core.types import Origin, Scope, Upload
from tests.cli.helpers import RELAXED, make_settings, noise_bytes


@pytest.fixture
async def svc(tmp_path: Path, tiny_clip: Path) -> AsyncIterator[PixRAG]:
    # Relaxed CLIP floors: every item of the space comes back, so a leak would show.
    settings = make_settings(tmp_path / "data", tiny_clip, **RELAXED)
    async with open_service(settings, Secrets({})) as service:
        yield service


def _up(name: str, data: bytes, origin: Origin | None = None) -> Upload:
    return Upload(name=name, data=data, source=f"https://chat.example/{name}",
                  origin=origin or Origin())


async def test_spaces_are_isolated(svc: PixRAG) -> None:
    a = [noise_bytes(i) for i in range(3)]
    b = noise_bytes(100)
    rep_a = await svc.index_uploads([_up(f"a{i}.png", d) for i, d in enumerate(a)], "A")
    rep_b = await svc.index_uploads([_up("b.png", b), _up("a0.png", a[0])], "B")
    ids_a = {i.id for i in rep_a.indexed}
    ids_b = {i.id for i in rep_b.indexed}
    assert len(ids_a) == 3 and len(ids_b) == 2
    assert not ids_a & ids_b  # the same bytes in two spaces are two items

    # B's exact image queried in A: near-duplicate and CLIP paths stay inside A.
    hits = await svc.similar(b, Scope("A"), k=10)
    assert hits and {h.id for h in hits} <= ids_a
    hits = await svc.similar(b, Scope("B"), k=10)
    assert hits[0].id in ids_b and hits[0].name == "b.png" and "near_duplicate" in hits[0].signals
    # a0 exists in both: each space finds its own copy.
    hits_a = await svc.similar(a[0], Scope("A"), k=10)
    hits_b = await svc.similar(a[0], Scope("B"), k=10)
    assert hits_a[0].id in ids_a and hits_b[0].id in ids_b and hits_a[0].id != hits_b[0].id
    assert {h.id for h in hits_b} <= ids_b
    for scope, ids in ((Scope("A"), ids_a), (Scope("B"), ids_b), (Scope("A", admin=True), ids_a)):
        found = await svc.search("a picture", scope, k=10)
        assert found and {h.id for h in found} <= ids

    assert (await svc.stats("A")).items == 3
    stats_b = await svc.stats("B")
    assert (stats_b.items, stats_b.spaces) == (2, {"A": 3, "B": 2})
    assert (await svc.stats("C")).items == 0
    # forget in B leaves A's copy of the same bytes (and its blob) alone
    [b_a0] = [i.id for i in rep_b.indexed if i.source.endswith("a0.png")]
    assert await svc.forget("B", b_a0) == [b_a0]
    hits_a = await svc.similar(a[0], Scope("A"), k=1)
    assert hits_a[0].id in ids_a and Path(hits_a[0].blob or "").is_file()
    # an id from another space is not found
    from core.errors import NotFound

    with pytest.raises(NotFound):
        await svc.forget("B", next(iter(ids_a)))


async def test_private_channel_rule(svc: PixRAG) -> None:
    secret_img = noise_bytes(7)
    secret_txt = b"Zebra launch codes are kept in the blue drawer.\n"
    private = Origin(platform="discord", channel="c1", message="m1", private=True)
    public = Origin(platform="discord", channel="c2", message="m2")
    rep = await svc.index_uploads(
        [_up("secret.png", secret_img, private), _up("secret.txt", secret_txt, private),
         _up("public.png", noise_bytes(8), public)], "S")
    assert not rep.failed
    ids = {i.source.rsplit("/", 1)[1]: i.id for i in rep.indexed}

    async def visible(scope: Scope) -> set[str]:
        img = {h.id for h in await svc.similar(secret_img, scope, k=10)}
        txt = {h.id for h in await svc.search("zebra launch codes", scope, k=10)}
        return img | txt

    for scope, sees in ((Scope("S", channel="c1"), True), (Scope("S", channel="c2"), False),
                        (Scope("S"), False), (Scope("S", admin=True), True),
                        (Scope("S", channel="c2", admin=True), True)):
        got = await visible(scope)
        assert (ids["secret.png"] in got) is sees, scope
        assert (ids["secret.txt"] in got) is sees, scope
        assert ids["public.png"] in got, scope  # public items are visible everywhere
    hit = await svc.item("S", ids["secret.png"])
    assert hit is not None and hit.origin.private and hit.origin.channel == "c1"
