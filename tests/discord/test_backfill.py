"""``/pixrag backfill`` end to end: real discord.py against the fake's paginated history."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import discord
import pytest

import bot.backfill
from bot.discord import backfill as discord_backfill
from bot.discord import messages
from core.types import Scope
from tests.discord import payloads as P
from tests.discord.conftest import eventually
from tests.discord.fakediscord import BOT_ID, FakeDiscord
from tests.discord.test_e2e import reply_json

EPHEMERAL = 64
MANAGER = P.MEMBER_PERMS | P.MANAGE_MESSAGES
START = datetime(2025, 1, 1, tzinfo=UTC)
_serial = iter(range(1, 1 << 20))


def flake(when: datetime) -> int:
    """A snowflake for ``when`` (unique: the low bits count up)."""
    return discord.utils.time_snowflake(when) + next(_serial)


@pytest.fixture
def settings(settings):
    """No OCR: these tests are about walking history, and OCR costs seconds per image here."""
    return settings.model_copy(update={"index": settings.index.model_copy(update={"ocr": False})})


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(discord_backfill, "PAGE_SIZE", 40)  # several pages from a small history
    monkeypatch.setattr(bot.backfill, "REPORT_EVERY_S", 0.0)  # every progress edit is sent


def image_message(fake: FakeDiscord, channel_id: int, gid: int, when: datetime, n: int, *,
                  author: int = 7, name: str | None = None, size: int | None = None,
                  ctype: str = "image/png") -> dict[str, Any]:
    data = P.png(((n * 37) % 256, (n * 91) % 256, (n * 53) % 256), (40 + n % 17, 30 + n % 13))
    name = name or f"shot-{n}.png"
    url = fake.add_cdn(name, data)
    att = P.attachment(url, name, len(data) if size is None else size, ctype)
    return P.message(flake(when), channel_id, gid, author, [att])


def seed_history(fake: FakeDiscord, channel_id: int, gid: int, n: int, every: int,
                 first: int = 0) -> list[dict[str, Any]]:
    """``n`` hourly messages; every ``every``-th one carries a distinct image."""
    msgs = []
    for i in range(n):
        when = START + timedelta(hours=i)
        if i % every == 0:
            msgs.append(image_message(fake, channel_id, gid, when, first + i))
        else:
            msgs.append(P.message(flake(when), channel_id, gid, 7, [], content=f"chat {i}"))
    fake.history.setdefault(channel_id, []).extend(msgs)
    return msgs


def thread(fake: FakeDiscord, gid: int, parent: int, *, archived: bool,
           ctype: int = 11) -> dict[str, Any]:
    data = P.channel(flake(START), gid, ctype=ctype, parent=parent, name="a thread")
    data["thread_metadata"]["archived"] = archived
    fake.threads[int(data["id"])] = data
    return data


def backfill_payload(gid: int, where: dict[str, Any], *, channel: dict[str, Any] | None = None,
                     since: str | None = None, perms: int = MANAGER) -> dict[str, Any]:
    opts: list[dict[str, Any]] = []
    if channel is not None:
        opts.append({"name": "channel", "type": 7, "value": channel["id"]})
    if since is not None:
        opts.append(P.string_opt("since", since))
    payload = P.command("pixrag", [P.subcommand("backfill", opts)], guild_id=gid,
                        channel_data=where, uid=1, perms=perms)
    if channel is not None:
        payload["data"]["resolved"] = {"channels": {channel["id"]: {**channel,
                                                                    "permissions": "0"}}}
    return payload


async def finished(h, channel_id: str, start: int, word: str = "finished") -> dict[str, Any]:
    """The last edit of the progress message in ``channel_id`` (it says ``word``)."""
    rec = await h.fake.wait_for(
        lambda r: r.method == "PATCH" and r.path.startswith(f"/channels/{channel_id}/messages/")
        and word in ((r.json or {}).get("content") or ""), start=start, timeout=120)
    return rec.json


def attachment_ids(msgs: list[dict[str, Any]]) -> list[str]:
    return [a["id"] for m in msgs for a in m["attachments"]]


async def items_by_attachment(service, space: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in service.library.catalog.all(space):
        counts[row.attachment] = counts.get(row.attachment, 0) + 1
    return counts


async def test_backfill_resumes_after_restart_skips_what_is_indexed_and_survives_429(
    start_bot, fake: FakeDiscord, service
) -> None:
    gid = flake(START - timedelta(days=60))
    design = P.channel(flake(START - timedelta(days=30)), gid, name="design")
    cid = int(design["id"])
    space = f"discord:{gid}"
    history = seed_history(fake, cid, gid, 240, 8)  # 30 images over 6 pages of 40
    # What live auto-indexing would not take either: a bot's image, a sound file.
    late = START + timedelta(hours=300)
    bot_image = image_message(fake, cid, gid, late, 900, author=BOT_ID)
    bot_image["author"]["bot"] = True
    sound_file = image_message(fake, cid, gid, late + timedelta(minutes=1), 901,
                              name="song.mp3", ctype="audio/mpeg")
    too_big = image_message(fake, cid, gid, late + timedelta(minutes=2), 902,
                            name="huge.png", size=200 * 1024 * 1024)
    fake.history[cid] += [bot_image, sound_file, too_big]
    design["last_message_id"] = too_big["id"]  # the progress estimate reads it
    active = thread(fake, gid, cid, archived=False)
    archived = thread(fake, gid, cid, archived=True)
    thread_msgs = [image_message(fake, int(active["id"]), gid, START + timedelta(days=1), 700),
                   image_message(fake, int(archived["id"]), gid, START + timedelta(days=2), 701)]
    fake.history[int(active["id"])] = [thread_msgs[0]]
    fake.history[int(archived["id"])] = [thread_msgs[1]]
    fake.private_threads_forbidden = True  # no Manage Threads: those are left out, quietly
    wanted = attachment_ids(history) + attachment_ids(thread_msgs)
    assert len(wanted) == 32

    # -- first run, stopped (the bot shuts down) after its first page: the first page's five
    # downloads answer, later ones wait, so the run cannot finish before the shutdown.
    fake.cdn_allow = 5
    h1 = await start_bot()
    await h1.add_guild(gid, [design])
    start = len(fake.requests)
    cb = await h1.reply(backfill_payload(gid, design))
    assert reply_json(cb)["flags"] & EPHEMERAL
    assert design["id"] in reply_json(cb)["content"]
    post = await fake.wait_for(lambda r: r.method == "POST"
                               and r.path == f"/channels/{cid}/messages", start=start)
    custom_ids = [c["custom_id"] for row in post.json["components"] for c in row["components"]]
    assert custom_ids == [f"pxr:bf:cancel:{cid}"]
    await eventually(lambda: service.get_state(space, f"backfill:{cid}"))
    await h1.bot.close()
    fake.cdn_allow = None
    fake.cdn_more.set()
    cursor = json.loads(await service.get_state(space, f"backfill:{cid}"))
    first_run = await items_by_attachment(service, space)
    assert 5 <= len(first_run) < 30, first_run
    assert cursor["after"] >= int(history[39]["id"])

    # -- after the restart: the same command continues from the cursor, with 429s on the way
    fake.rate_limits += [["GET", f"/channels/{cid}/messages", 2],
                         ["GET", f"/guilds/{gid}/threads/active", 1]]
    hits_before = len(fake.cdn_hits)
    h2 = await start_bot()
    await h2.add_guild(gid, [design])
    start = len(fake.requests)
    await h2.callback(backfill_payload(gid, design))
    final = await finished(h2, design["id"], start)

    pages = [r for r in fake.requests[start:]
             if r.method == "GET" and r.path == f"/channels/{cid}/messages"]
    assert int(pages[0].query["after"]) == cursor["after"]  # resumed, not from the start
    assert all(int(r.query["limit"]) == 40 for r in pages)
    assert any(r.method == "GET" and r.path == f"/guilds/{gid}/threads/active"
               for r in fake.requests[start:])
    assert fake.rate_limits[0][2] == 0 and fake.rate_limits[1][2] == 0  # the 429s were served

    assert await service.get_state(space, f"backfill-lease:{cid}") is None
    counts = await items_by_attachment(service, space)
    assert sorted(counts) == sorted(wanted)  # every file, threads included, nothing else
    assert set(counts.values()) == {1}  # nothing indexed twice
    # Files indexed before the restart were skipped by id: not downloaded again.
    again = {path.split("/")[-1] for path in fake.cdn_hits[hits_before:]}
    names = {a["id"]: a["filename"] for m in history for a in m["attachments"]}
    assert not again & {names[a] for a in first_run if a in names}
    assert "song.mp3" not in again and "shot-900.png" not in again  # never fetched
    assert "huge.png" not in again  # refused from its metadata, before any download

    assert final["components"] == []  # no Cancel button on a finished run
    assert "1 failed" in final["content"] and "`huge.png`" in final["content"]
    assert "MB" in final["content"]  # the reason: over the size limit
    edits = [r.json["content"] for r in fake.requests[start:] if r.method == "PATCH"
             and r.path.startswith(f"/channels/{cid}/messages/")]
    assert any(" of ~" in e and "files" in e for e in edits[:-1]), edits

    # Same Origin as a live upload; thread items are filed under their channel.
    hit = await service.item(space, next(iter(await _ids(service, space, thread_msgs[1]))))
    assert hit.origin.channel == design["id"] and not hit.origin.private
    assert hit.origin.message == thread_msgs[1]["id"] and hit.origin.author == "7"
    assert hit.origin.link.endswith(f"/{archived['id']}/{thread_msgs[1]['id']}")

    # Run again: nothing left to do, nothing downloaded.
    hits_before, start = len(fake.cdn_hits), len(fake.requests)
    await h2.callback(backfill_payload(gid, design))
    again_final = await finished(h2, design["id"], start)
    assert len(fake.cdn_hits) == hits_before
    assert "indexed 0 files, 0 failed" in again_final["content"]


async def _ids(service, space: str, msg: dict[str, Any]) -> set[str]:
    rows = service.library.catalog.find(space, message=msg["id"])
    return {r.id for r in rows}


async def test_private_channel_rule_permissions_and_cancel(h, fake: FakeDiscord,
                                                           service) -> None:
    gid = flake(START - timedelta(days=60))
    general = P.channel(flake(START - timedelta(days=40)), gid, name="general")
    staff = P.channel(flake(START - timedelta(days=30)), gid, private=True, name="staff")
    sid = int(staff["id"])
    seed_history(fake, sid, gid, 120, 4)  # 30 images
    await h.add_guild(gid, [general, staff])
    space = f"discord:{gid}"

    denied = await h.reply(backfill_payload(gid, general, channel=staff,
                                               perms=P.MEMBER_PERMS))
    assert reply_json(denied)["content"] == messages.NOT_MANAGER_PERMISSION
    bad = await h.reply(backfill_payload(gid, general, channel=staff, since="last week"))
    assert reply_json(bad)["content"] == messages.BACKFILL_BAD_SINCE.format(since="last week")

    # Another bot process sharing the catalog is backfilling #staff: refused; once its lease
    # is stale (that process died), it no longer counts.
    lease = f"backfill-lease:{sid}"
    await service.set_state(space, lease, json.dumps({"owner": "other:1", "at": time.time()}))
    busy = await h.reply(backfill_payload(gid, general, channel=staff))
    assert reply_json(busy)["content"] == messages.BACKFILL_RUNNING.format(channel=f"<#{sid}>")
    await service.set_state(space, lease, json.dumps({"owner": "other:1",
                                                      "at": time.time() - 3600}))

    # Started from #general for #staff: progress goes to #staff, not where it was asked.
    fake.cdn_hold = asyncio.Event()
    start = len(fake.requests)
    await h.callback(backfill_payload(gid, general, channel=staff))
    post = await fake.wait_for(lambda r: r.method == "POST" and r.path.endswith("/messages")
                               and r.path.startswith("/channels/"), start=start)
    assert post.path == f"/channels/{sid}/messages"
    again = await h.reply(backfill_payload(gid, staff))
    assert reply_json(again)["content"] == messages.BACKFILL_RUNNING.format(
        channel=f"<#{sid}>")

    # The backfill runs in the background: a question meanwhile is answered as usual.
    await eventually(lambda: fake.cdn_hits)
    search = P.command("search", [P.string_opt("query", "anything")], guild_id=gid,
                       channel_data=general, uid=5)
    answer = await h.followup(search)
    assert (answer.json or {}).get("content") == messages.NO_RESULTS

    # Cancel while the first downloads are held: the run stops after the files in hand.
    message = P.message(flake(START), sid, gid, BOT_ID, [], content=post.json["content"])
    message["author"]["bot"] = True
    message["components"] = post.json["components"]
    press = P.button(f"pxr:bf:cancel:{sid}", message, guild_id=gid, channel_data=staff, uid=1)
    press["member"]["permissions"] = str(MANAGER)
    ack = await h.callback(press)
    assert ack.json["data"]["content"] == messages.BACKFILL_CANCELLING.format(
        channel=f"<#{sid}>")
    fake.cdn_hold.set()
    final = await finished(h, staff["id"], start, word="cancelled")
    assert final["components"] == []
    indexed = await items_by_attachment(service, space)
    assert 1 <= len(indexed) <= 2  # the two files in hand when Cancel was pressed
    assert await service.get_state(space, f"backfill:{sid}") is None  # page 1 was cut short
    assert await service.get_state(space, lease) is None  # released when the run ended

    # The private-channel rule, exactly as for live items.
    (item_id,) = list(await _ids_all(service, space))[:1]
    hit = await service.item(space, item_id)
    assert hit.origin.private and hit.origin.channel == staff["id"]
    assert await service.search("image", Scope(space=space, channel=general["id"])) == []
    assert await service.search("image", Scope(space=space, channel=staff["id"]))


async def _ids_all(service, space: str) -> set[str]:
    rows = service.library.catalog.all(space)
    return {r.id for r in rows}
