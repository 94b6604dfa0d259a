"""Chat users under load and abuse: deletes racing indexing, floods, slow answers."""

from __future__ import annotations

import asyncio

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
