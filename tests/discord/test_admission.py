"""A flood of uploads waits for room in the process-wide budget; questions are answered
meanwhile; downloads stop at the announced size; auto-index is rate-limited per channel."""

from __future__ import annotations

import asyncio

from bot.discord import messages
from core.admission import Admission
from tests.cli.helpers import noise_bytes
from tests.discord import payloads as P
from tests.discord.conftest import eventually
from tests.discord.test_e2e import EPHEMERAL, autoindex, reply_json, search


def _post(h, gid: int, ch: dict, seed: int) -> dict:
    data = noise_bytes(seed)
    url = h.fake.add_cdn(f"f{seed}.png", data)
    return P.message(P.next_id(), int(ch["id"]), gid, 7, [P.attachment(url, f"f{seed}.png",
                                                                       len(data))])


async def test_upload_flood_waits_for_room_and_queries_are_answered(h) -> None:
    h.service.admission = Admission(max_files=2, max_bytes=64 * 1024 * 1024)
    gid = P.next_id()
    ch = P.channel(P.next_id(), gid)
    await h.add_guild(gid, [ch])
    await autoindex(h, gid, ch)
    h.fake.cdn_gate = asyncio.Event()
    posts = [_post(h, gid, ch, seed) for seed in range(6)]
    for msg in posts:
        await h.fake.dispatch("MESSAGE_CREATE", msg)
    # Two downloads run; the other four wait for room before downloading anything.
    await eventually(lambda: h.fake.cdn_in_flight == 2 and h.service.admission.waiting == 4)
    await asyncio.sleep(0.2)
    assert h.fake.cdn_in_flight == 2 and len(h.fake.cdn_hits) == 2

    # A question meanwhile is answered at once.
    assert reply_json(await search(h, gid, ch, query="anything"))["content"] is not None

    h.fake.cdn_gate.set()
    for msg in posts:
        await h.fake.wait_for(lambda r, m=msg: r.method == "PUT"
                              and f"/messages/{m['id']}/reactions/" in r.path)
    assert h.fake.cdn_max_in_flight == 2
    assert h.service.admission.files_in_flight == 0 and h.service.admission.bytes_in_flight == 0
    assert (await h.service.stats(f"discord:{gid}")).items == 6


async def test_download_stops_past_the_announced_size(h) -> None:
    gid = P.next_id()
    ch = P.channel(P.next_id(), gid)
    await h.add_guild(gid, [ch])
    data = noise_bytes(9, size=(400, 300))
    url = h.fake.add_cdn("liar.png", data)
    att = P.attachment(url, "liar.png", 1000)  # announces 1000 bytes, serves far more
    rec = await h.followup(P.command("similar", [P.attachment_opt("image", att)], guild_id=gid,
                                     channel_data=ch, uid=5, attachments={att["id"]: att}))
    assert rec.json["flags"] & EPHEMERAL
    assert rec.json["content"] == messages.LARGER_THAN_SAID.format(name="`liar.png`", limit=25)
    assert h.service.admission.files_in_flight == 0


async def test_autoindex_is_rate_limited_per_channel(start_bot) -> None:
    h = await start_bot(autoindex_per_minute=2)
    gid = P.next_id()
    busy, calm = P.channel(P.next_id(), gid), P.channel(P.next_id(), gid, name="calm")
    await h.add_guild(gid, [busy, calm])
    await autoindex(h, gid, busy)
    await autoindex(h, gid, calm)
    for seed in range(4):
        await h.fake.dispatch("MESSAGE_CREATE", _post(h, gid, busy, seed))
    quiet = _post(h, gid, calm, 10)
    await h.fake.dispatch("MESSAGE_CREATE", quiet)
    await h.fake.wait_for(lambda r: r.method == "PUT"
                          and f"/messages/{quiet['id']}/reactions/" in r.path)
    await eventually(lambda: _items(h, gid, 3))
    await asyncio.sleep(0.3)
    assert len(h.fake.cdn_hits) == 3  # the 3rd and 4th post in the busy channel: not fetched


async def _items(h, gid: int, n: int) -> bool:
    return (await h.service.stats(f"discord:{gid}")).items == n
