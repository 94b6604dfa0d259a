"""Privacy and trust at the Discord edge: private threads, operational errors, markdown."""

from __future__ import annotations

import json

import pytest

from bot.discord import messages
from core.errors import StoreError
from tests.cli.helpers import noise_bytes
from tests.discord import payloads as P
from tests.discord.test_e2e import EPHEMERAL, autoindex, reply_json, search

SECRET_PATH = "/srv/pixrag-secret/data/catalog.sqlite"


async def _guild_with_thread(h, *, parent_private: bool):
    gid = P.next_id()
    parent = P.channel(P.next_id(), gid, private=parent_private, name="parent")
    other = P.channel(P.next_id(), gid, name="elsewhere")
    thread = P.channel(P.next_id(), gid, ctype=12, parent=int(parent["id"]), name="secret")
    data = P.guild(gid, [parent, other])
    data["threads"] = [thread]  # cached, as after GUILD_CREATE / THREAD_CREATE
    await h.fake.dispatch("GUILD_CREATE", data)
    from tests.discord.conftest import eventually

    await eventually(lambda: h.bot.get_guild(gid) is not None
                     and h.bot.get_guild(gid).get_thread(int(thread["id"])) is not None)
    return gid, parent, other, thread


@pytest.mark.parametrize("parent_private", [False, True])
async def test_private_thread_is_its_own_audience(h, parent_private: bool) -> None:
    gid, parent, other, thread = await _guild_with_thread(h, parent_private=parent_private)
    await autoindex(h, gid, parent)
    await autoindex(h, gid, other)
    in_thread = await post_image(h, gid, thread, seed=1, name="thread.png")
    await post_image(h, gid, parent, seed=2, name="parent.png")
    await post_image(h, gid, other, seed=3, name="public.png")

    [hit] = [x for x in await h.service.search("x", _admin(gid), k=10) if x.name == "thread.png"]
    assert hit.origin.channel == thread["id"] and hit.origin.private  # filed under the thread
    assert hit.origin.message == in_thread["id"]

    def titles(rec) -> set[str]:
        return {e["title"].split("] ", 1)[1] for e in reply_json(rec).get("embeds") or []}

    # Inside the thread: public items, the parent's and the thread's.
    assert titles(await search(h, gid, thread)) == {"thread.png", "parent.png", "public.png"}
    # The parent channel (even when public) does not see the private thread's item.
    seen_in_parent = titles(await search(h, gid, parent))
    assert "thread.png" not in seen_in_parent and "parent.png" in seen_in_parent
    seen_elsewhere = titles(await search(h, gid, other))
    assert "thread.png" not in seen_elsewhere
    assert ("parent.png" in seen_elsewhere) is (not parent_private)

    # "More like this" from the parent on the thread's item: core says it does not exist.
    shown = P.message(P.next_id(), int(parent["id"]), gid, 1, [])
    shown["components"] = [{"type": 1, "components": [
        {"type": 2, "style": 1, "label": "More like #1", "custom_id": f"pxr:more:{hit.id}"}]}]
    press = P.button(f"pxr:more:{hit.id}", shown, guild_id=gid, channel_data=parent, uid=5)
    gone = await h.followup(press)
    assert gone.json["content"] == messages.MORE_GONE
    # ... and forget by id from the parent finds nothing, even for a manager.
    forget = P.command("forget", [P.string_opt("ref", hit.id)], guild_id=gid,
                       channel_data=parent, uid=5, perms=P.MEMBER_PERMS | P.MANAGE_MESSAGES)
    assert "Nothing indexed here matches" in (await h.followup(forget)).json["content"]
    assert (await h.service.get_item(_admin(gid), hit.id)) is not None
    # From inside the thread the manager can.
    forget = P.command("forget", [P.string_opt("ref", hit.id)], guild_id=gid,
                       channel_data=thread, uid=5, perms=P.MEMBER_PERMS | P.MANAGE_MESSAGES)
    assert (await h.followup(forget)).json["content"] == messages.FORGOT.format(count=1)


async def post_image(h, gid: int, ch: dict, *, seed: int, name: str) -> dict:
    """A user posts a distinct image (noise: no near-duplicate collapse); wait for the ✅."""
    data = noise_bytes(seed)
    url = h.fake.add_cdn(name, data)
    msg = P.message(P.next_id(), int(ch["id"]), gid, 7, [P.attachment(url, name, len(data))])
    start = len(h.fake.requests)
    await h.fake.dispatch("MESSAGE_CREATE", msg)
    await h.fake.wait_for(
        lambda r: r.method == "PUT" and f"/messages/{msg['id']}/reactions/" in r.path, start=start
    )
    return msg


def _admin(gid: int):
    from core.types import Scope

    return Scope(f"discord:{gid}", admin=True)


def _everything_sent(h) -> str:
    return "\n".join(json.dumps(r.json) + repr(r.files) for r in h.fake.requests)


@pytest.mark.allow_error_logs
async def test_store_failure_shows_the_fixed_sentence_not_the_path(h, monkeypatch) -> None:
    gid = P.next_id()
    ch = P.channel(P.next_id(), gid)
    await h.add_guild(gid, [ch])

    async def broken(*args, **kwargs):
        raise StoreError(f"catalog {SECRET_PATH} failed: database disk image is malformed")

    async def broken_stream(*args, **kwargs):
        raise StoreError(f"keyword index {SECRET_PATH}: disk I/O error")
        yield ""  # an async generator, like the real one

    monkeypatch.setattr(h.service, "search", broken)
    monkeypatch.setattr(h.service, "ask_stream", broken_stream)
    rec = await search(h, gid, ch)
    assert rec.json["content"] == StoreError.public and rec.json["flags"] & EPHEMERAL
    ask = P.command("ask", [P.string_opt("question", "where?")], guild_id=gid,
                    channel_data=ch, uid=5)
    start = await h.send(ask)
    assert (await h.wait_followup(ask, start)).json["content"] == StoreError.public
    assert SECRET_PATH not in _everything_sent(h)
    assert "malformed" not in _everything_sent(h) and "I/O" not in _everything_sent(h)


async def test_untrusted_text_is_not_markdown_in_replies(h) -> None:
    gid = P.next_id()
    ch = P.channel(P.next_id(), gid)
    await h.add_guild(gid, [ch])
    await autoindex(h, gid, ch)
    await post_image(h, gid, ch, seed=4, name="[Reset password](https:⁄⁄evil.example).png")
    query = "[Reset password](https://evil.example) @everyone <@123>"
    body = reply_json(await search(h, gid, ch, query=query))
    assert "](" not in body["content"] and "<@" not in body["content"]
    assert "\\[Reset password\\]\\(https\\://evil.example\\)" in body["content"]
    title = body["embeds"][0]["title"]
    assert "](" not in title and "\\[Reset password\\]" in title
    assert body["allowed_mentions"] == {"parse": []}
