"""Slack under abuse: a message deleted while its files are still downloading."""

from __future__ import annotations

import asyncio

from tests.slack.conftest import png
from tests.slack.fakeslack import command, event_body, message


async def test_message_deleted_while_its_file_downloads_stays_forgotten(socket_app, service):
    fake = await socket_app(admins=["UADMIN"])
    await fake.send_envelope("slash_commands", command(
        "/pixrag", "autoindex on", user="UADMIN", response_url=fake.response_url()))
    await fake.wait_for("respond")
    fake.file_gate = asyncio.Event()
    file = fake.add_file(png(mark=4), "gone.png", "image/png")
    await fake.send_envelope("events_api", message(
        "", channel="C1", channel_type="channel", ts="1702.1", files=[file]))
    while fake.files_in_flight < 1:
        await asyncio.sleep(0.02)
    deleted = event_body({"type": "message", "subtype": "message_deleted", "channel": "C1",
                          "hidden": True, "deleted_ts": "1702.1", "ts": "1702.2",
                          "event_ts": "1702.2", "channel_type": "channel"})
    await fake.wait_ack(await fake.send_envelope("events_api", deleted))
    await asyncio.sleep(0.2)
    fake.file_gate.set()
    while service.admission.files_in_flight:
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)
    assert (await service.stats("slack:T1")).items == 0
    assert not fake.of("reactions.add")
