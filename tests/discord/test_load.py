"""Chat users under load and abuse: deletes racing indexing, floods, slow answers."""

from __future__ import annotations

import asyncio
import threading

from bot.discord import messages
from core.admission import Admission
from tests.cli.helpers import noise_bytes
from tests.discord import payloads as P
from tests.discord.conftest import eventually
from tests.discord.fakediscord import BOT_ID
from tests.discord.test_e2e import (
    EPHEMERAL,
    autoindexed_channel,
    post_image,
    reply_json,
    search,
)


async def test_message_deleted_while_its_files_are_indexed_stays_forgotten(h) -> None:
    gid, ch = await autoindexed_channel(h)
    space = f"discord:{gid}"
    data = noise_bytes(3)
    url = h.fake.add_cdn("late.png", data)
    msg = P.message(P.next_id(), int(ch["id"]), gid, 7, [P.attachment(url, "late.png",
                                                                      len(data))])
    h.fake.cdn_gate = asyncio.Event()
    await h.fake.dispatch("MESSAGE_CREATE", msg)
    await eventually(lambda: h.fake.cdn_in_flight == 1)
    # The poster deletes it while the download is still running.
    await h.fake.dispatch("MESSAGE_DELETE", {"id": msg["id"], "channel_id": ch["id"],
                                             "guild_id": str(gid)})
    await asyncio.sleep(0.3)
    h.fake.cdn_gate.set()
    await eventually(lambda: h.service.admission.files_in_flight == 0)
    await asyncio.sleep(0.3)
    assert (await h.service.stats(space)).items == 0
    assert not h.fake.matching("PUT", rf"/messages/{msg['id']}/reactions/")


async def _busy_writer(h) -> threading.Event:
    """Occupy the index's one writer thread (a long commit) until the event is set."""
    release = threading.Event()
    h.service.library._writer.submit(release.wait, 30)
    return release


async def test_admin_commands_are_acknowledged_while_the_index_is_busy(h) -> None:
    """Discord drops an interaction not acknowledged within 3 s ("The application did not
    respond"): commands that write to the index must acknowledge first."""
    gid = P.next_id()
    ch = P.channel(P.next_id(), gid)
    await h.add_guild(gid, [ch])
    admin = P.MANAGE_GUILD | P.MANAGE_MESSAGES
    release = await _busy_writer(h)
    try:
        for sub, opts in (("backfill", []), ("autoindex", [P.string_opt("state", "on")])):
            payload = P.command("pixrag", [P.subcommand(sub, opts)], guild_id=gid,
                                channel_data=ch, uid=1, perms=admin)
            start = await h.send(payload)
            ack = await h.fake.wait_for(
                lambda r, p=payload: r.path.startswith(f"/interactions/{p['id']}/"),
                start=start, timeout=2.5)
            assert ack.json["type"] == 5  # "thinking…", the answer follows
    finally:
        release.set()
    await eventually(lambda: _has_autoindex(h, gid, ch))
    await h.bot.deps.backfills.aclose()


async def _has_autoindex(h, gid: int, ch: dict) -> bool:
    return ch["id"] in await h.service.autoindex_channels(f"discord:{gid}")


async def test_same_file_posted_in_many_messages_at_once(h) -> None:
    gid, ch = await autoindexed_channel(h)
    space = f"discord:{gid}"
    data = noise_bytes(5)
    h.fake.cdn_gate = asyncio.Event()
    posts = []
    for _ in range(12):
        url = h.fake.add_cdn("same.png", data)
        posts.append(P.message(P.next_id(), int(ch["id"]), gid, 7,
                               [P.attachment(url, "same.png", len(data))]))
    for msg in posts:
        await h.fake.dispatch("MESSAGE_CREATE", msg)
    await eventually(lambda: h.fake.cdn_in_flight == len(posts))
    h.fake.cdn_gate.set()
    await eventually(lambda: h.service.admission.files_in_flight == 0
                     and len(h.fake.cdn_hits) == len(posts))
    await asyncio.sleep(0.5)
    assert (await h.service.stats(space)).items == 1
    assert h.fake.matching("PUT", r"/reactions/")  # at least the first one is marked


async def test_stopping_bot_finishes_uploads_in_hand_then_cancels_stalled_ones(
        h) -> None:
    """A restart in the middle of uploads: what can finish in the grace period is indexed
    and marked; a stalled download is cancelled; nothing fails on the closed connection."""
    h.bot.deps.drain_s = 1.0
    gid, ch = await autoindexed_channel(h)
    h.fake.cdn_allow = 2  # two downloads answer, the third stalls
    posts = []
    for seed in range(3):
        data = noise_bytes(seed)
        url = h.fake.add_cdn(f"f{seed}.png", data)
        posts.append(P.message(P.next_id(), int(ch["id"]), gid, 7,
                               [P.attachment(url, f"f{seed}.png", len(data))]))
        await h.fake.dispatch("MESSAGE_CREATE", posts[-1])
    await eventually(lambda: len(h.fake.cdn_hits) == 3)
    started = asyncio.get_running_loop().time()
    stopping = asyncio.create_task(h.bot.close())
    await eventually(lambda: h.bot.deps.closing)
    # A question while it stops is told so, privately, instead of never being answered.
    late = P.command("search", [P.string_opt("query", "x")], guild_id=gid, channel_data=ch,
                     uid=5)
    told = reply_json(await h.reply(late))
    assert told["content"] == messages.STOPPING and told["flags"] & EPHEMERAL
    await stopping
    assert asyncio.get_running_loop().time() - started < 5
    marked = {m["id"] for m in posts
              if h.fake.matching("PUT", rf"/messages/{m['id']}/reactions/")}
    assert len(marked) == 2
    assert h.service.admission.files_in_flight == 0
    assert (await h.service.stats(f"discord:{gid}")).items == 2
    h.fake.cdn_more.set()


async def test_image_questions_go_ahead_of_queued_uploads(h) -> None:
    """A flood of auto-indexed uploads fills the upload budget: a user's /similar waits for
    room, but ahead of the uploads queued before it, not behind all of them."""
    h.service.admission = Admission(max_files=2, max_bytes=64 * 1024 * 1024)
    gid, ch = await autoindexed_channel(h)
    h.fake.cdn_gate = asyncio.Event()
    for seed in range(6):
        data = noise_bytes(seed)
        url = h.fake.add_cdn(f"f{seed}.png", data)
        await h.fake.dispatch("MESSAGE_CREATE", P.message(
            P.next_id(), int(ch["id"]), gid, 7, [P.attachment(url, f"f{seed}.png", len(data))]))
    await eventually(lambda: h.fake.cdn_in_flight == 2 and h.service.admission.waiting == 4)
    data = noise_bytes(99)
    att = P.attachment(h.fake.add_cdn("query.png", data), "query.png", len(data))
    ask = P.command("similar", [P.attachment_opt("image", att)], guild_id=gid,
                    channel_data=ch, uid=5, attachments={att["id"]: att})
    start = await h.send(ask)
    await eventually(lambda: h.service.admission.waiting == 5)
    h.fake.cdn_gate.set()
    await h.wait_followup(ask, start)
    assert h.fake.cdn_hits[2].endswith("/query.png"), h.fake.cdn_hits


async def test_feedback_button_spam_is_rate_limited(start_bot) -> None:
    h = await start_bot(rate_per_minute=3)
    gid, ch = await autoindexed_channel(h)
    await post_image(h, gid, ch)
    body = reply_json(await search(h, gid, ch, uid=8))  # 1 of this user's 3 requests
    up = next(c for row in body["components"] for c in row["components"]
              if c["custom_id"].startswith("pxr:fb:up:"))
    shown = P.message(P.next_id(), int(ch["id"]), gid, BOT_ID, [])
    shown.update(content=body["content"], embeds=body["embeds"], components=body["components"])
    replies = []
    for _ in range(4):
        press = P.button(up["custom_id"], shown, guild_id=gid, channel_data=ch, uid=8)
        replies.append(reply_json(await h.callback(press))["content"])
    assert replies[:2] == [messages.FEEDBACK_THANKS] * 2
    assert all(r.startswith("Easy there!") for r in replies[2:]), replies
    await asyncio.sleep(0.2)
    assert len(await h.service.export_feedback(f"discord:{gid}")) == 2
