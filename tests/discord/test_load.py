"""Chat users under load and abuse: deletes racing indexing, floods, slow answers."""

from __future__ import annotations

import asyncio
import threading

from tests.cli.helpers import noise_bytes
from tests.discord import payloads as P
from tests.discord.conftest import eventually
from tests.discord.test_e2e import autoindexed_channel


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
