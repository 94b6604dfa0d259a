"""Item-level access through core: get_item / similar_to_item / forget obey the Scope,
including threads (own audience, parent's items visible, never the other way round)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.app import open_service
from core.config import Secrets
from core.errors import NotFound
from core.service import PixRAG
from core.types import PUBLIC, Origin, Scope, Upload
from tests.cli.helpers import RELAXED, make_settings, noise_bytes


@pytest.fixture
async def svc(tmp_path: Path, tiny_clip: Path) -> AsyncIterator[PixRAG]:
    settings = make_settings(tmp_path / "data", tiny_clip, **RELAXED)
    async with open_service(settings, Secrets({})) as service:
        yield service


def test_scope_stays_backward_compatible() -> None:
    assert Scope("s", "c", True) == Scope(space="s", channel="c", admin=True)
    assert Scope("s", "c").audiences() == [PUBLIC, "c"]
    assert Scope("s").audiences() == [PUBLIC]
    assert Scope("s", "t", parent="p").audiences() == [PUBLIC, "t", "p"]
    assert Scope("s", "c", parent="c").audiences() == [PUBLIC, "c"]
    assert Scope("s", "c", admin=True).audiences() is None
    assert Scope("s", "t", parent="p").sees("p") and not Scope("s", "p").sees("t")


async def _seed(svc: PixRAG) -> dict[str, str]:
    def up(name: str, seed: int, origin: Origin) -> Upload:
        return Upload(name, noise_bytes(seed), f"https://chat.example/{name}", origin)

    rep = await svc.index_uploads([
        up("public.png", 1, Origin(platform="discord", channel="pub", message="m1")),
        up("parent.png", 2, Origin(platform="discord", channel="par", message="m2",
                                   private=True)),
        up("thread.png", 3, Origin(platform="discord", channel="thr", message="m3",
                                   private=True, author="u3")),
    ], "S")
    assert not rep.failed
    return {i.source.rsplit("/", 1)[1]: i.id for i in rep.indexed}


async def test_get_item_and_similar_to_item_respect_the_scope(svc: PixRAG) -> None:
    ids = await _seed(svc)
    in_thread = Scope("S", channel="thr", parent="par")
    in_parent = Scope("S", channel="par")
    elsewhere = Scope("S", channel="pub")

    assert (await svc.get_item(in_thread, ids["thread.png"])) is not None
    assert (await svc.get_item(in_thread, ids["parent.png"])) is not None
    assert (await svc.get_item(in_parent, ids["thread.png"])) is None  # no leak upwards
    assert (await svc.get_item(elsewhere, ids["parent.png"])) is None
    assert (await svc.get_item(Scope("S", admin=True), ids["thread.png"])) is not None
    assert (await svc.get_item(Scope("other", admin=True), ids["public.png"])) is None

    seen = {h.id for h in await svc.search("a picture", in_thread, k=10)}
    assert seen == set(ids.values())
    seen = {h.id for h in await svc.search("a picture", in_parent, k=10)}
    assert seen == {ids["public.png"], ids["parent.png"]}

    more = await svc.similar_to_item(in_thread, ids["parent.png"], k=10)
    assert ids["parent.png"] not in {h.id for h in more}
    assert {h.id for h in more} == {ids["public.png"], ids["thread.png"]}
    more = await svc.similar_to_item(elsewhere, ids["public.png"], k=10)
    assert {h.id for h in more} == set()  # the only other visible items are private
    with pytest.raises(NotFound):
        await svc.similar_to_item(in_parent, ids["thread.png"])


async def test_a_shared_channel_sees_only_its_own_items(svc: PixRAG) -> None:
    # A channel people of other tenants read: the space's public items stay out of it.
    ids = await _seed(svc)
    assert Scope("S", "par", shared=True).audiences() == ["par"]
    shared = Scope("S", channel="par", shared=True)
    assert {h.id for h in await svc.search("a picture", shared, k=10)} == {ids["parent.png"]}
    assert (await svc.get_item(shared, ids["public.png"])) is None
    assert (await svc.similar(noise_bytes(1), shared, k=10))[0].id == ids["parent.png"]
    nowhere = Scope("S", shared=True)  # no channel: nothing, and no error from any store
    assert await svc.search("a picture", nowhere, k=10) == []
    assert await svc.similar(noise_bytes(1), nowhere, k=10) == []


async def test_forget_with_a_scope_only_touches_visible_items(svc: PixRAG) -> None:
    ids = await _seed(svc)
    with pytest.raises(NotFound):
        await svc.forget("S", ids["thread.png"], scope=Scope("S", channel="par"))
    assert await svc.forget_origin("S", message="m3", scope=Scope("S", channel="pub")) == []
    assert (await svc.get_item(Scope("S", admin=True), ids["thread.png"])) is not None
    # A chat user cannot probe the host's files: no path lookups with a scope.
    with pytest.raises(NotFound):
        await svc.forget("S", str(Path(__file__).parent), scope=Scope("S", admin=True))

    assert await svc.forget("S", ids["thread.png"], scope=Scope("S", "thr", parent="par")) == [
        ids["thread.png"]]
    assert await svc.forget_origin("S", message="m2", scope=Scope("S", channel="par")) == [
        ids["parent.png"]]
    assert await svc.forget("S", ids["public.png"]) == [ids["public.png"]]  # the CLI way
