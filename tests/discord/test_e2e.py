"""End to end: real discord.py against the fake Discord, real core with a tiny CLIP."""

from __future__ import annotations

import logging

import pytest

from bot.discord import messages
from tests.discord import payloads as P
from tests.discord.conftest import eventually
from tests.discord.fakediscord import APP_ID, BOT_ID, user

EPHEMERAL = 64


def reply_json(rec) -> dict:
    """The message body of an immediate reply (callback type 4) or a followup/edit."""
    body = rec.json or {}
    return body.get("data", body)


async def post_image(h, gid: int, ch: dict, *, color=(200, 30, 30), name="red.png",
                     author: int = 7) -> dict:
    """A user posts an image: MESSAGE_CREATE, then wait until the bot reacted (indexed)."""
    data = P.png(color)
    url = h.fake.add_cdn(name, data)
    return await post(h, gid, ch, [P.attachment(url, name, len(data))], author=author)


async def post(h, gid: int, ch: dict, attachments: list[dict], *, author: int = 7) -> dict:
    """A user posts files: MESSAGE_CREATE, then wait until the bot reacted (indexed)."""
    msg = P.message(P.next_id(), int(ch["id"]), gid, author, attachments)
    start = len(h.fake.requests)
    await h.fake.dispatch("MESSAGE_CREATE", msg)
    await h.fake.wait_for(
        lambda r: r.method == "PUT" and f"/messages/{msg['id']}/reactions/" in r.path, start=start
    )
    return msg


async def autoindexed_channel(h) -> tuple[int, dict]:
    """A new server with one channel where auto-indexing is on."""
    gid = P.next_id()
    ch = P.channel(P.next_id(), gid)
    await h.add_guild(gid, [ch])
    await autoindex(h, gid, ch)
    return gid, ch


async def search(h, gid: int, ch: dict, query: str = "red square", uid: int = 5):
    payload = P.command("search", [P.string_opt("query", query)], guild_id=gid,
                        channel_data=ch, uid=uid)
    return await h.followup(payload)


async def autoindex(h, gid: int, ch: dict, state: str = "on", perms: int = P.MANAGE_GUILD):
    payload = P.command("pixrag", [P.subcommand("autoindex", [P.string_opt("state", state)])],
                        guild_id=gid, channel_data=ch, uid=1, perms=perms)
    return await h.reply(payload)


async def test_autoindex_search_isolation_and_delete(h) -> None:
    g1, g2 = P.next_id(), P.next_id()
    c1, c2 = P.channel(P.next_id(), g1), P.channel(P.next_id(), g2)
    await h.add_guild(g1, [c1])
    await h.add_guild(g2, [c2])

    denied = await autoindex(h, g1, c1, perms=P.MEMBER_PERMS)
    assert denied.json["type"] == 4 and denied.json["data"]["flags"] & EPHEMERAL
    assert denied.json["data"]["content"] == messages.NOT_ADMIN

    ok = await autoindex(h, g1, c1)
    assert "**on**" in reply_json(ok)["content"] and reply_json(ok)["flags"] & EPHEMERAL
    assert c1["id"] in await h.service.autoindex_channels(f"discord:{g1}")

    msg = await post_image(h, g1, c1)
    jump = f"https://discord.com/channels/{g1}/{c1['id']}/{msg['id']}"

    rec = await search(h, g1, c1)
    body = reply_json(rec)
    assert body["embeds"], body
    embed = body["embeds"][0]
    assert embed["url"] == jump and "red.png" in embed["title"]
    assert embed["image"]["url"] == "attachment://thumb-1.jpg"
    assert rec.files["files[0]"][0] == "thumb-1.jpg"
    assert rec.files["files[0]"][1][:2] == b"\xff\xd8"  # a JPEG thumbnail
    assert [a["filename"] for a in body["attachments"]] == ["thumb-1.jpg"]
    custom_ids = [c["custom_id"] for row in body["components"] for c in row["components"]]
    assert any(c.startswith("pxr:fb:up:") for c in custom_ids)
    assert any(c.startswith("pxr:more:") for c in custom_ids)

    # Another guild never sees it.
    other = reply_json(await search(h, g2, c2))
    assert other["content"] == messages.NO_RESULTS and not other.get("embeds")

    # Deleting the message (uncached path: raw event) removes what was indexed from it.
    h.bot._connection._messages.clear()
    await h.fake.dispatch("MESSAGE_DELETE", {"id": msg["id"], "channel_id": c1["id"],
                                             "guild_id": str(g1)})
    await eventually(lambda: _count(h, f"discord:{g1}", 0))
    gone = reply_json(await search(h, g1, c1))
    assert gone["content"] == messages.NO_RESULTS


async def _count(h, space: str, n: int) -> bool:
    return (await h.service.stats(space)).items == n


async def test_text_documents_posted_in_chat_are_indexed(h) -> None:
    # A long message pasted into Discord becomes message.txt; notes arrive as .md or .csv.
    gid, ch = await autoindexed_channel(h)
    atts = []
    for name, ctype in (("notes.md", "text/markdown; charset=utf-8"),
                        ("message.txt", "text/plain; charset=utf-8")):
        text = f"# {name}\n\nRotate the zebracorn credentials every Tuesday.\n".encode()
        atts.append(P.attachment(h.fake.add_cdn(name, text), name, len(text), ctype))
    await post(h, gid, ch, atts)
    await h.service.wait_enriched()
    hits = await h.service.search("zebracorn credentials", _scope(gid, ch["id"]))
    assert {hit.origin.attachment for hit in hits} >= {a["id"] for a in atts}


async def test_private_channel_items_stay_in_their_channel(h) -> None:
    gid = P.next_id()
    public = P.channel(P.next_id(), gid, name="general")
    secret = P.channel(P.next_id(), gid, private=True, name="staff")
    thread = P.channel(P.next_id(), gid, ctype=11, parent=int(secret["id"]), name="t")
    await h.add_guild(gid, [public, secret])
    await autoindex(h, gid, secret)
    msg = await post_image(h, gid, secret, color=(20, 200, 40), name="green.png")

    hit = (await h.service.search("green", _scope(gid, secret["id"])))[0]
    assert hit.origin.private and hit.origin.channel == secret["id"]
    assert hit.origin.message == msg["id"] and hit.origin.author == "7"

    assert reply_json(await search(h, gid, secret))["embeds"]
    assert reply_json(await search(h, gid, thread))["embeds"]  # threads inherit the parent
    assert reply_json(await search(h, gid, public))["content"] == messages.NO_RESULTS


def _scope(gid: int, channel: str):
    from core.types import Scope

    return Scope(space=f"discord:{gid}", channel=channel)


async def test_edit_removing_an_attachment_forgets_it(h) -> None:
    gid, ch = await autoindexed_channel(h)
    a, b = P.png((250, 250, 0)), P.png((0, 0, 250))
    att_a = P.attachment(h.fake.add_cdn("a.png", a), "a.png", len(a))
    att_b = P.attachment(h.fake.add_cdn("b.png", b), "b.png", len(b))
    msg = P.message(P.next_id(), int(ch["id"]), gid, 7, [att_a, att_b])
    start = len(h.fake.requests)
    await h.fake.dispatch("MESSAGE_CREATE", msg)
    await h.fake.wait_for(lambda r: "/reactions/" in r.path, start=start)
    space = f"discord:{gid}"
    assert (await h.service.stats(space)).items == 2
    await h.fake.dispatch("MESSAGE_UPDATE", dict(msg, attachments=[att_b],
                                                 edited_timestamp="2026-01-01T00:01:00+00:00"))
    await eventually(lambda: _count(h, space, 1))
    left = await h.service.search("anything", _scope(gid, ch["id"]))
    assert [x.origin.attachment for x in left] == [att_b["id"]]


async def test_uncached_edit_keeps_the_items_of_attachments_still_there(h) -> None:
    """After a restart (nothing cached) a user edits an old post and removes one file: only
    that file's item goes. The post also holds a file over the size limit, which auto-index
    skipped; it must not make the edit drop what is still attached."""
    gid, ch = await autoindexed_channel(h)
    a, b = P.png((250, 120, 0)), P.png((0, 120, 250))
    att_a = P.attachment(h.fake.add_cdn("a.png", a), "a.png", len(a))
    att_b = P.attachment(h.fake.add_cdn("b.png", b), "b.png", len(b))
    big = P.attachment(h.fake.add_cdn("big.png", a), "big.png", 30 * 1024 * 1024)
    msg = P.message(P.next_id(), int(ch["id"]), gid, 7, [att_a, att_b, big])
    start = len(h.fake.requests)
    await h.fake.dispatch("MESSAGE_CREATE", msg)
    await h.fake.wait_for(lambda r: "/reactions/" in r.path, start=start)
    space = f"discord:{gid}"
    assert (await h.service.stats(space)).items == 2
    h.bot._connection._messages.clear()
    await h.fake.dispatch("MESSAGE_UPDATE", dict(msg, attachments=[att_a, big],
                                                 edited_timestamp="2026-01-01T00:01:00+00:00"))
    await eventually(lambda: _count(h, space, 1))
    left = await h.service.search("anything", _scope(gid, ch["id"]))
    assert [x.origin.attachment for x in left] == [att_a["id"]]


async def test_ask_replies_with_sources_files_and_feedback(h) -> None:
    gid, ch = await autoindexed_channel(h)
    await post_image(h, gid, ch)

    payload = P.command("ask", [P.string_opt("question", "what colour is it?")], guild_id=gid,
                        channel_data=ch, uid=5)
    edit = await h.final_edit(payload)
    callback = h.fake.matching("POST", f"/interactions/{payload['id']}/")[0]
    assert callback.json["type"] == 5  # deferred at once
    body = edit.json
    assert body["content"].startswith("> what colour is it?")
    assert body["embeds"][0]["footer"]["text"].startswith("id ")
    assert edit.files["files[0]"][0] == "thumb-1.jpg"

    up = next(c for row in body["components"] for c in row["components"]
              if c["custom_id"].startswith("pxr:fb:up:"))
    shown_msg = P.message(P.next_id(), int(ch["id"]), gid, BOT_ID, [])
    shown_msg.update(content=body["content"], embeds=body["embeds"],
                     components=body["components"])
    press = P.button(up["custom_id"], shown_msg, guild_id=gid, channel_data=ch, uid=6)
    thanks = await h.callback(press)
    assert thanks.json["data"]["content"] == messages.FEEDBACK_THANKS
    assert thanks.json["data"]["flags"] & EPHEMERAL
    item_id = body["embeds"][0]["footer"]["text"][3:]

    async def stored() -> list:
        return await h.service.export_feedback(f"discord:{gid}")

    rows = await eventually(stored)
    assert rows[0]["query"] == "what colour is it?" and rows[0]["verdict"] == "up"
    assert rows[0]["target"] == ["red.png"]

    # After a restart the token is unknown: the reply itself still says what was shown.
    old_reply = dict(shown_msg, components=[{"type": 1, "components": [
        {"type": 2, "style": 2, "label": "Not helpful", "custom_id": "pxr:fb:down:0123abcd"}]}])
    press2 = P.button("pxr:fb:down:0123abcd", old_reply, guild_id=gid, channel_data=ch, uid=6)
    assert (await h.callback(press2)).json["data"]["content"] == messages.FEEDBACK_THANKS
    rows = await eventually(lambda: _feedback_n(h, gid, 2))
    down = next(r for r in rows if r["verdict"] == "down")
    assert down["query"] == "what colour is it?"
    assert down["rejected"] == ["red.png"]  # the ids read back from the reply's footers
    assert item_id


async def _feedback_n(h, gid: int, n: int):
    rows = await h.service.export_feedback(f"discord:{gid}")
    return rows if len(rows) >= n else None


async def test_more_like_this_button_and_context_menus(h) -> None:
    gid = P.next_id()
    ch = P.channel(P.next_id(), gid)
    await h.add_guild(gid, [ch])
    data = P.png((10, 120, 200))
    url = h.fake.add_cdn("blue.png", data)
    target = P.message(P.next_id(), int(ch["id"]), gid, 7, [P.attachment(url, "blue.png",
                                                                           len(data))])
    # "Add to PixRAG" needs Manage Messages.
    denied = await h.callback(P.message_menu(messages.CTX_ADD, target, guild_id=gid,
                                             channel_data=ch, uid=5))
    assert denied.json["data"]["content"] == messages.NOT_MANAGER_PERMISSION
    add = P.message_menu(messages.CTX_ADD, target, guild_id=gid, channel_data=ch, uid=5,
                         perms=P.MEMBER_PERMS | P.MANAGE_MESSAGES)
    done = await h.followup(add)
    assert done.json["content"] == messages.INDEXED.format(indexed=1)

    find = P.message_menu(messages.CTX_FIND_SIMILAR, target, guild_id=gid, channel_data=ch,
                          uid=5)
    res = reply_json(await h.followup(find))
    assert res["embeds"][0]["url"] == f"https://discord.com/channels/{gid}/{ch['id']}/{target['id']}"
    more_id = next(c["custom_id"] for row in res["components"] for c in row["components"]
                   if c["custom_id"].startswith("pxr:more:"))
    shown = P.message(P.next_id(), int(ch["id"]), gid, BOT_ID, [])
    shown["components"] = res["components"]
    press = P.button(more_id, shown, guild_id=gid, channel_data=ch, uid=5)
    more = reply_json(await h.followup(press))
    # The seed itself is left out; with one item indexed nothing else is left.
    assert more["content"] == messages.NO_RESULTS


async def test_index_and_forget_permissions(h) -> None:
    gid = P.next_id()
    ch = P.channel(P.next_id(), gid)
    await h.add_guild(gid, [ch])
    data = P.png((90, 90, 90))
    att = P.attachment(h.fake.add_cdn("grey.png", data), "grey.png", len(data))
    idx = P.command("index", [P.attachment_opt("file1", att)], guild_id=gid, channel_data=ch,
                    uid=5, attachments={att["id"]: att})
    denied = await h.callback(idx)
    assert denied.json["data"]["content"] == messages.NOT_MANAGER_PERMISSION
    assert not h.fake.cdn_hits

    idx = P.command("index", [P.attachment_opt("file1", att)], guild_id=gid, channel_data=ch,
                    uid=5, perms=P.MEMBER_PERMS | P.MANAGE_MESSAGES,
                    attachments={att["id"]: att})
    rep = await h.followup(idx)
    assert rep.json["content"] == messages.INDEXED.format(indexed=1)
    item = (await h.service.search("grey", _scope(gid, ch["id"])))[0]
    assert item.origin.author == "5"

    # Someone else (no Manage Messages) may not forget it; the author may.
    other = await h.followup(P.command("forget", [P.string_opt("ref", item.id)], guild_id=gid,
                                       channel_data=ch, uid=6))
    assert other.json["content"] == messages.NOT_ALLOWED_FORGET
    mine = await h.followup(P.command("forget", [P.string_opt("ref", item.id)], guild_id=gid,
                                      channel_data=ch, uid=5))
    assert mine.json["content"] == messages.FORGOT.format(count=1)
    assert (await h.service.stats(f"discord:{gid}")).items == 0


async def test_limits_checked_before_download(h) -> None:
    gid = P.next_id()
    ch = P.channel(P.next_id(), gid)
    await h.add_guild(gid, [ch])
    big = P.attachment(h.fake.add_cdn("big.png", b"x"), "big.png", 26 * 1024 * 1024)
    rec = await h.callback(P.command("similar", [P.attachment_opt("image", big)], guild_id=gid,
                                     channel_data=ch, uid=5, attachments={big["id"]: big}))
    assert rec.json["type"] == 4 and rec.json["data"]["flags"] & EPHEMERAL
    assert "limit here is 25 MB" in rec.json["data"]["content"]
    evil = P.attachment("https://evil.example/cat.png", "cat.png", 10)
    rec = await h.callback(P.command("similar", [P.attachment_opt("image", evil)], guild_id=gid,
                                     channel_data=ch, uid=5, attachments={evil["id"]: evil}))
    assert "hosted elsewhere" in rec.json["data"]["content"]
    assert h.fake.cdn_hits == []


async def test_rate_limit_is_friendly(start_bot) -> None:
    h = await start_bot(rate_per_minute=2)
    gid = P.next_id()
    ch = P.channel(P.next_id(), gid)
    await h.add_guild(gid, [ch])
    for _ in range(2):
        await search(h, gid, ch)
    payload = P.command("search", [P.string_opt("query", "x")], guild_id=gid, channel_data=ch,
                        uid=5)
    rec = await h.callback(payload)
    assert rec.json["type"] == 4 and rec.json["data"]["flags"] & EPHEMERAL
    assert rec.json["data"]["content"].startswith("Easy there! You can send 2 requests a minute")
    # Another user is not affected.
    assert reply_json(await search(h, gid, ch, uid=99))["content"] == messages.NO_RESULTS


@pytest.mark.allow_error_logs
async def test_unexpected_error_is_logged_and_user_gets_apology(h, caplog, monkeypatch) -> None:
    gid = P.next_id()
    ch = P.channel(P.next_id(), gid)
    await h.add_guild(gid, [ch])

    async def broken(*args, **kwargs):
        raise RuntimeError("secret internals /srv/x")

    monkeypatch.setattr(h.service, "search", broken)
    payload = P.command("search", [P.string_opt("query", "x")], guild_id=gid, channel_data=ch,
                        uid=5)
    start = await h.send(payload)
    rec = await h.wait_followup(payload, start)
    assert rec.json["content"] == messages.APOLOGY and rec.json["flags"] & EPHEMERAL
    # The public "thinking…" message was removed before the private apology.
    assert h.fake.matching("DELETE", f"/webhooks/{APP_ID}/{payload['token']}/messages/@original")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "command=search" in errors[0].getMessage()
    assert f"guild={gid}" in errors[0].getMessage() and errors[0].exc_info


async def test_sync_is_explicit(start_bot, fake) -> None:
    await start_bot()
    assert not fake.matching("PUT", "/commands$")
    await start_bot(sync=True)
    (put,) = fake.matching("PUT", f"^/applications/{APP_ID}/commands$")
    names = {(c["name"], c["type"]) for c in put.json}
    assert names == {("ask", 1), ("search", 1), ("similar", 1), ("index", 1), ("forget", 1),
                     ("pixrag", 1), (messages.CTX_FIND_SIMILAR, 3), (messages.CTX_ADD, 3)}
    pixrag = next(c for c in put.json if c["name"] == "pixrag")
    assert {o["name"] for o in pixrag["options"]} == {"autoindex", "backfill", "stats"}
    assert put.headers["Authorization"] == "Bot fake-token"
    await start_bot(sync=True, sync_guild="123")
    assert fake.matching("PUT", f"^/applications/{APP_ID}/guilds/123/commands$")


async def test_sync_to_a_server_the_bot_is_not_in_names_the_setting(start_bot, fake) -> None:
    # discord.py syncs while logging in: the 403 used to read "Discord answered HTTP 403 to
    # the login; try again later".
    from core.errors import ConfigError

    fake.guild_sync_forbidden = True
    with pytest.raises(ConfigError) as err:
        await start_bot(sync=True, sync_guild="456")
    assert str(err.value).startswith(
        "config discord.sync_guild (or PIXRAG_DISCORD__SYNC_GUILD): Discord refused the "
        "commands for server 456 (403 Missing Access): is the bot in that server")


async def test_dm_is_a_private_space_per_user(h) -> None:
    gid = P.next_id()
    ch = P.channel(P.next_id(), gid)
    await h.add_guild(gid, [ch])
    dm = {"id": str(P.next_id()), "type": 1, "recipients": [user(5, "user5")],
          "last_message_id": None}
    data = P.png((120, 0, 120))
    att = P.attachment(h.fake.add_cdn("purple.png", data), "purple.png", len(data))
    idx = P.command("index", [P.attachment_opt("file1", att)], guild_id=None, channel_data=dm,
                    uid=5, attachments={att["id"]: att})
    assert (await h.followup(idx)).json["content"] == messages.INDEXED.format(indexed=1)
    hit = (await h.service.search("x", _scope_dm(5, dm["id"])))[0]
    assert hit.origin.private and hit.origin.channel == dm["id"]

    found = await h.followup(P.command("search", [P.string_opt("query", "purple")],
                                       guild_id=None, channel_data=dm, uid=5))
    assert reply_json(found)["embeds"]
    # The same user in a guild, and another user's DMs, see nothing of it.
    assert reply_json(await search(h, gid, ch, uid=5))["content"] == messages.NO_RESULTS
    dm6 = dict(dm, id=str(P.next_id()), recipients=[user(6, "user6")])
    other = await h.followup(P.command("search", [P.string_opt("query", "purple")],
                                       guild_id=None, channel_data=dm6, uid=6))
    assert other.json["content"] == messages.NO_RESULTS

    stats = await h.followup(P.command("pixrag", [P.subcommand("stats", [])], guild_id=None,
                                       channel_data=dm, uid=5))
    assert stats.json["content"].startswith("**1** item(s) indexed here (1 image)")
    assert stats.json["flags"] & EPHEMERAL


def _scope_dm(uid: int, channel: str):
    from core.types import Scope

    return Scope(space=f"discord:dm:{uid}", channel=channel)


async def test_index_by_message_link_stays_in_the_guild(h) -> None:
    g1, g2 = P.next_id(), P.next_id()
    c1, c2 = P.channel(P.next_id(), g1), P.channel(P.next_id(), g2)
    await h.add_guild(g1, [c1])
    await h.add_guild(g2, [c2])
    data = P.png((0, 160, 160))
    att = P.attachment(h.fake.add_cdn("teal.png", data), "teal.png", len(data))
    mine = P.message(P.next_id(), int(c1["id"]), g1, 7, [att])
    theirs = P.message(P.next_id(), int(c2["id"]), g2, 8, [att])
    for m in (mine, theirs):
        h.fake.messages[(int(m["channel_id"]), int(m["id"]))] = m
    manager = P.MEMBER_PERMS | P.MANAGE_MESSAGES

    async def index_link(link: str):
        return await h.followup(P.command("index", [P.string_opt("message_link", link)],
                                          guild_id=g1, channel_data=c1, uid=5, perms=manager))

    # A link into another guild, or one that lies about its guild, is refused.
    for link in (f"https://discord.com/channels/{g2}/{c2['id']}/{theirs['id']}",
                 f"https://discord.com/channels/{g1}/{c2['id']}/{theirs['id']}"):
        assert (await index_link(link)).json["content"] == messages.BAD_LINK
    assert h.fake.cdn_hits == []

    link = f"https://discord.com/channels/{g1}/{c1['id']}/{mine['id']}"
    assert (await index_link(link)).json["content"] == messages.INDEXED.format(indexed=1)
    hit = (await h.service.search("x", _scope(g1, c1["id"])))[0]
    assert hit.source == link and hit.origin.author == "7" and not hit.origin.private

    forget = await h.followup(P.command("forget", [P.string_opt("ref", link)], guild_id=g1,
                                        channel_data=c1, uid=5, perms=manager))
    assert forget.json["content"] == messages.FORGOT.format(count=1)


@pytest.mark.allow_error_logs
async def test_listener_errors_are_logged_with_context(h, caplog, monkeypatch) -> None:
    gid = P.next_id()
    ch = P.channel(P.next_id(), gid)
    await h.add_guild(gid, [ch])

    async def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(h.service, "forget_origin", broken)
    mid = P.next_id()
    await h.fake.dispatch("MESSAGE_DELETE", {"id": str(mid), "channel_id": ch["id"],
                                             "guild_id": str(gid)})
    errors = await eventually(lambda: [r for r in caplog.records if r.levelno >= logging.ERROR])
    message = errors[0].getMessage()
    assert "on_raw_message_delete" in message and str(mid) in message and errors[0].exc_info
