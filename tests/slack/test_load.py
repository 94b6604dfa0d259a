"""Slack under abuse: a message deleted while its files are still downloading."""

from __future__ import annotations

import asyncio

from bot.slack import messages as msg
from bot.slack import render
from tests.slack.conftest import png, upload
from tests.slack.fakeslack import command, event_body, feedback_click, message


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


async def test_feedback_button_spam_is_rate_limited(socket_app, service):
    report = await service.index_uploads([upload("fb.png", png(mark=2))], "slack:T1")
    fake = await socket_app(rate_per_minute=2)
    value = render.feedback_value("where is fb?", [report.indexed[0].id])
    for _ in range(4):
        await fake.send_envelope("interactive",
                                 feedback_click(value, response_url=fake.response_url()))
    await fake.wait_for("respond", count=4)
    texts = [c.args["text"] for c in fake.of("respond")]
    assert texts.count(msg.FEEDBACK_THANKS) == 2
    assert sum("too many requests" in t for t in texts) == 2, texts
    assert len(await service.export_feedback("slack:T1")) == 2
