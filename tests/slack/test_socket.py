"""End to end over Socket Mode: real slack-bolt/slack-sdk against the fake Slack."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from PIL import Image

from bot.slack import messages as msg
from bot.slack import render
from bot.slack.interactive import INDEX_MESSAGE_SHORTCUT, SIMILAR_SHORTCUT
from tests.slack.conftest import png, upload
from tests.slack.fakeslack import (
    BOT_TOKEN,
    command,
    event_body,
    feedback_click,
    mention,
    message,
    message_shortcut,
)


def _texts(call: Any) -> str:
    """Everything a message shows: fallback text plus every block's text."""
    blocks = call.args.get("blocks") or []
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    return call.args.get("text", "") + json.dumps(blocks)


async def test_mention_answers_in_thread_with_sources_and_thumbnails(socket_app, service):
    await service.index_uploads([upload("red.png", png((220, 20, 20)))], "slack:T1")
    fake = await socket_app()
    file = fake.add_file(png((210, 20, 20)), "query.png", "image/png")
    env = await fake.send_envelope("events_api", mention("which image is red?", ts="1700.1",
                                                         files=[file]))

    ack = await fake.wait_ack(env)
    assert ack == {"envelope_id": env}
    # Streamed: posted in the thread as the answer is written, then edited into its final form.
    final = await _final(fake)
    (post,) = fake.of("chat.postMessage")
    assert post.args["channel"] == "C1" and post.args["thread_ts"] == "1700.1"
    assert post.headers["Authorization"] == f"Bearer {BOT_TOKEN}"
    assert final.args["channel"] == "C1" and final.args["ts"] == fake.posted[0]
    assert "red.png" in _texts(final)
    # :eyes: first, at once; then the answer.
    react = fake.of("reactions.add")[0]
    assert (react.args["channel"], react.args["timestamp"], react.args["name"]) == (
        "C1", "1700.1", "eyes")
    assert fake.calls.index(react) < fake.calls.index(post)
    blocks = final.args["blocks"]
    buttons = [e for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert {b["action_id"] for b in buttons} == {render.FEEDBACK_UP, render.FEEDBACK_DOWN}
    assert json.loads(buttons[0]["value"])["q"] == "which image is red?"

    done = await fake.wait_for("files.completeUploadExternal")
    assert done.args["channel_id"] == "C1" and done.args["thread_ts"] == "1700.1"
    get_url = fake.of("files.getUploadURLExternal")[0]
    (uploaded,) = fake.of("upload")
    assert fake.calls.index(get_url) < fake.calls.index(uploaded) < fake.calls.index(done)
    assert uploaded.body[:2] == b"\xff\xd8"  # the JPEG thumbnail from core's blob store
    assert json.loads(done.args["files"])[0]["title"].startswith("[1] red.png")


async def test_image_alone_with_mention_is_a_reverse_search(socket_app, service):
    await service.index_uploads([upload("blue.png", png((20, 20, 220), mark=2))], "slack:T1")
    fake = await socket_app()
    file = fake.add_file(png((20, 20, 210), mark=2), "query.png", "image/png")
    await fake.send_envelope("events_api", mention("", files=[file], ts="1700.2"))

    final = await _final(fake)
    (download,) = fake.of("file")
    assert download.headers["Authorization"] == f"Bearer {BOT_TOKEN}"
    assert fake.of("chat.postMessage")[0].args["thread_ts"] == "1700.2"
    assert "blue.png" in _texts(final)
    await fake.wait_for("files.completeUploadExternal")


async def test_pdf_with_mention_is_searched_by_its_first_page(socket_app, service):
    await service.index_uploads([upload("poster.png", png((30, 160, 160), mark=3))], "slack:T1")
    fake = await socket_app()
    page = Image.open(io.BytesIO(png((30, 160, 160), mark=3))).convert("RGB")
    buf = io.BytesIO()
    page.save(buf, "PDF")
    file = fake.add_file(buf.getvalue(), "poster.pdf", "application/pdf")
    await fake.send_envelope("events_api", mention("what is this poster?", files=[file]))
    final = await _final(fake)
    assert "poster.png" in _texts(final)
    assert not fake.of("chat.postEphemeral")


async def test_text_question_cites_a_document(socket_app, service):
    notes = b"# Roadmap\n\nThe quarterly revenue forecast lives in the finance wiki."
    await service.index_uploads([upload("roadmap.md", notes)], "slack:T1")
    fake = await socket_app()
    await fake.send_envelope("events_api", mention("where is the quarterly revenue forecast?"))
    final = await _final(fake)
    assert "roadmap.md" in _texts(final)
    assert any(b["type"] == "actions" for b in final.args["blocks"])


async def test_login_page_instead_of_image_is_an_error_for_the_user(socket_app, service):
    fake = await socket_app()
    # Slack serves its HTML login page (status 200) when a file cannot be read.
    file = fake.add_file(b"<!DOCTYPE html><html>login</html>", "cat.png", "image/png",
                         content_type="text/html; charset=utf-8")
    await fake.send_envelope("events_api", mention("what is this?", files=[file], ts="1700.3"))

    eph = await fake.wait_for("chat.postEphemeral")
    assert eph.args["user"] == "U1" and eph.args["thread_ts"] == "1700.3"
    assert "cat.png" in eph.args["text"] and "web page" in eph.args["text"]
    assert not fake.of("chat.postMessage")


async def test_file_over_size_limit_is_refused_before_download(socket_app, service):
    fake = await socket_app(max_file_mb=1)
    file = fake.add_file(png(), "huge.png", "image/png", size=5 * 1024 * 1024)
    await fake.send_envelope("events_api", mention("similar?", files=[file]))

    eph = await fake.wait_for("chat.postEphemeral")
    assert "huge.png" in eph.args["text"] and "1 MB" in eph.args["text"]
    assert not fake.of("file")


async def test_dm_is_answered_and_thread_history_is_read(socket_app, service):
    await service.index_uploads([upload("chart.png", png(mark=3))], "slack:T1")
    fake = await socket_app()
    fake.threads[("D1", "1700.10")] = [
        {"type": "message", "user": "U1", "text": "show me the chart", "ts": "1700.10"},
        {"type": "message", "bot_id": "BBOT", "user": "UBOT", "text": "Here [1]", "ts": "1700.11"},
        {"type": "message", "user": "U1", "text": "and the colours?", "ts": "1700.12"},
    ]
    body = message("and the colours?", channel="D1", channel_type="im", ts="1700.12")
    body["event"]["thread_ts"] = "1700.10"
    await fake.send_envelope("events_api", body)

    await _final(fake)
    post = fake.of("chat.postMessage")[0]
    assert post.args["channel"] == "D1" and post.args["thread_ts"] == "1700.10"
    (replies,) = fake.of("conversations.replies")
    assert replies.args["channel"] == "D1" and replies.args["ts"] == "1700.10"


async def test_ask_command_acks_then_answers_via_response_url(socket_app, service):
    notes = b"The onboarding slide deck explains the expense policy."
    await service.index_uploads([upload("slide.md", notes)], "slack:T1")
    fake = await socket_app()
    url = fake.response_url()
    env = await fake.send_envelope("slash_commands", command("/ask", "expense policy slide?",
                                                             response_url=url))
    ack = await fake.wait_ack(env)
    assert "expense policy slide?" in ack["payload"]["text"]
    resp = await fake.wait_for("respond")
    assert resp.args["response_type"] == "in_channel"
    assert "slide.md" in _texts(resp) and "<@U1> asked" in _texts(resp)


async def test_similar_shortcut_posts_results_and_thumbnails_in_thread(socket_app, service):
    await service.index_uploads([upload("logo.png", png((10, 200, 10), mark=1))], "slack:T1")
    fake = await socket_app()
    file = fake.add_file(png((10, 190, 10), mark=1), "mine.png", "image/png")
    msg_payload = {"type": "message", "user": "U2", "ts": "1700.20", "text": "", "files": [file]}
    env = await fake.send_envelope("interactive", message_shortcut(
        SIMILAR_SHORTCUT, msg_payload, response_url=fake.response_url()))

    assert await fake.wait_ack(env) == {"envelope_id": env}
    post = await fake.wait_for("chat.postMessage")
    assert post.args["thread_ts"] == "1700.20" and "logo.png" in _texts(post)
    done = await fake.wait_for("files.completeUploadExternal")
    assert done.args["thread_ts"] == "1700.20"


async def test_similar_shortcut_on_message_without_files_says_so(socket_app, service):
    fake = await socket_app()
    msg_payload = {"type": "message", "user": "U2", "ts": "1700.21", "text": "hi"}
    await fake.send_envelope("interactive", message_shortcut(
        SIMILAR_SHORTCUT, msg_payload, response_url=fake.response_url()))
    resp = await fake.wait_for("respond")
    assert resp.args["text"] == msg.NO_FILES and resp.args["response_type"] == "ephemeral"


async def test_index_shortcut_then_message_deleted_forgets(socket_app, service):
    fake = await socket_app()
    file = fake.add_file(png(mark=2), "board.png", "image/png")
    msg_payload = {"type": "message", "user": "U2", "ts": "1700.30", "text": "", "files": [file]}
    await fake.send_envelope("interactive", message_shortcut(
        INDEX_MESSAGE_SHORTCUT, msg_payload, response_url=fake.response_url()))
    resp = await fake.wait_for("respond")
    assert "Indexed 1 item" in resp.args["text"]
    (hit,) = await service.similar(png(mark=2), _scope("C1"))
    assert hit.origin.message == "1700.30" and hit.origin.author == "U2"
    assert hit.origin.attachment == file["id"] and not hit.origin.private
    assert hit.source == "https://test.slack.com/archives/C1/p170030"

    deleted = event_body({"type": "message", "subtype": "message_deleted", "channel": "C1",
                          "hidden": True, "deleted_ts": "1700.30", "ts": "1700.31",
                          "event_ts": "1700.31", "channel_type": "channel"})
    env = await fake.send_envelope("events_api", deleted)
    await fake.wait_ack(env)
    await _until(lambda: _count(service, "slack:T1"), 0)


async def test_file_deleted_forgets(socket_app, service):
    await service.index_uploads([upload("a.png", png(mark=1), file_id="FDEL")], "slack:T1")
    fake = await socket_app()
    await fake.send_envelope("events_api", event_body(
        {"type": "file_deleted", "file_id": "FDEL", "event_ts": "1700.40"}))
    await _until(lambda: _count(service, "slack:T1"), 0)


async def test_autoindex_remembers_origin_and_private_channel_rule(socket_app, service):
    fake = await socket_app(admins=["UADMIN"])
    fake.channels["C9"] = {"is_private": True}
    env = await fake.send_envelope("slash_commands", command(
        "/pixrag", "autoindex on", channel="C9", user="UADMIN", response_url=fake.response_url()))
    await fake.wait_ack(env)
    on = await fake.wait_for("respond")
    assert "on" in on.args["text"] and "private" in on.args["text"]
    assert on.args["response_type"] == "in_channel"

    file = fake.add_file(png((90, 90, 0), mark=3), "secret.png", "image/png")
    await fake.send_envelope("events_api", message(
        "", channel="C9", channel_type="group", user="U5", ts="1700.50", files=[file]))
    react = await fake.wait_for("reactions.add")
    assert react.args["name"] == "card_index_dividers" and react.args["timestamp"] == "1700.50"

    # Visible in its own channel, invisible from a public one, absent from another workspace.
    (hit,) = await service.similar(png((90, 90, 0), mark=3), _scope("C9"))
    assert hit.origin.private and hit.origin.channel == "C9" and hit.origin.author == "U5"
    assert await service.similar(png((90, 90, 0), mark=3), _scope("C1")) == []
    assert await service.similar(png((90, 90, 0), mark=3), _scope("C9", team="T2")) == []


async def test_autoindex_needs_an_admin_and_other_channels_are_not_indexed(socket_app, service):
    fake = await socket_app()
    await fake.send_envelope("slash_commands", command(
        "/pixrag", "autoindex on", user="U1", response_url=fake.response_url()))
    denied = await fake.wait_for("respond")
    assert msg.NOT_ADMIN in denied.args["text"] and denied.args["response_type"] == "ephemeral"
    users = await fake.wait_for("users.info")
    assert users.args["user"] == "U1"
    # Not opted in: a shared file is not downloaded.
    file = fake.add_file(png(), "x.png", "image/png")
    env = await fake.send_envelope("events_api", message(
        "", channel="C1", channel_type="channel", files=[file]))
    await fake.wait_ack(env)
    assert await service.autoindex_channels("slack:T1") == set()


async def test_forget_command_author_only(socket_app, service):
    report = await service.index_uploads([upload("mine.png", png(mark=4), author="U1")],
                                         "slack:T1")
    item_id = report.indexed[0].id
    fake = await socket_app()
    await fake.send_envelope("slash_commands", command(
        "/pixrag", f"forget {item_id}", user="U2", response_url=fake.response_url()))
    denied = await fake.wait_for("respond")
    assert msg.NOT_AUTHOR in denied.args["text"]
    assert await service.item("slack:T1", item_id) is not None

    await fake.send_envelope("slash_commands", command(
        "/pixrag", f"forget {item_id}", user="U1", response_url=fake.response_url()))
    done = await fake.wait_for("respond", count=2)
    assert done.args["text"] == msg.FORGET_DONE.format(n=1)
    assert await service.item("slack:T1", item_id) is None


async def test_forget_by_message_link_checks_the_author_in_slack(socket_app, service):
    await service.index_uploads([upload("l.png", png(mark=1), channel="C1",
                                        message="1690000000.000001", author="U7")], "slack:T1")
    fake = await socket_app()
    fake.threads[("C1", "1690000000.000001")] = [
        {"type": "message", "user": "U7", "ts": "1690000000.000001", "text": ""}]
    link = "<https://test.slack.com/archives/C1/p1690000000000001>"
    await fake.send_envelope("slash_commands", command(
        "/pixrag", f"forget {link}", user="U7", response_url=fake.response_url()))
    done = await fake.wait_for("respond")
    assert done.args["text"] == msg.FORGET_DONE.format(n=1)
    assert await _count(service, "slack:T1") == 0
    await fake.send_envelope("slash_commands", command(
        "/pixrag", f"forget {link}", user="U7", response_url=fake.response_url()))
    again = await fake.wait_for("respond", count=2)
    assert "not in this workspace's index" in again.args["text"]


async def test_pixrag_index_opens_modal_private_to_the_channel(socket_app, service):
    fake = await socket_app()
    await fake.send_envelope("slash_commands", command(
        "/pixrag", "index", channel="G5", response_url=fake.response_url()))
    opened = await fake.wait_for("views.open")
    view = opened.args["view"]
    view = json.loads(view) if isinstance(view, str) else view
    assert json.loads(view["private_metadata"]) == {"channel": "G5", "private": True}
    env = await fake.send_envelope("slash_commands", command(
        "/pixrag", "", response_url=fake.response_url()))
    assert "/pixrag autoindex" in (await fake.wait_ack(env))["payload"]["text"]


async def test_workspaces_do_not_see_each_other(socket_app, service):
    await service.index_uploads([upload("t1-only.png", png(mark=1))], "slack:T1")
    fake = await socket_app()
    await fake.send_envelope("events_api", mention("anything?", team="T2"))
    final = await _final(fake)
    assert "t1-only.png" not in _texts(final) and "anything" in _texts(final)
    assert not fake.of("files.getUploadURLExternal")


async def test_feedback_button_records_verdict(socket_app, service):
    report = await service.index_uploads([upload("fb.png", png(mark=2))], "slack:T1")
    fake = await socket_app()
    value = render.feedback_value("where is fb?", [report.indexed[0].id])
    env = await fake.send_envelope("interactive",
                                   feedback_click(value, response_url=fake.response_url()))
    await fake.wait_ack(env)
    thanks = await fake.wait_for("respond")
    assert thanks.args["text"] == msg.FEEDBACK_THANKS and thanks.args["replace_original"] is False
    (entry,) = await service.export_feedback("slack:T1")
    assert entry["query"] == "where is fb?" and entry["verdict"] == "up"
    assert entry["target"] == ["fb.png"] and entry["platform"] == "slack"


async def test_app_home_shows_stats(socket_app, service):
    await service.index_uploads([upload("h.png", png())], "slack:T1")
    fake = await socket_app()
    await fake.send_envelope("events_api", event_body(
        {"type": "app_home_opened", "user": "U1", "channel": "D1", "tab": "home",
         "event_ts": "1700.70"}))
    pub = await fake.wait_for("views.publish")
    view = pub.args["view"]
    view = json.loads(view) if isinstance(view, str) else view
    assert pub.args["user_id"] == "U1" and view["type"] == "home"
    assert "*Indexed here:* 1 item(s)" in json.dumps(view)


async def test_rate_limit_per_user(socket_app, service):
    fake = await socket_app(rate_per_minute=1)
    await fake.send_envelope("events_api", mention("first", ts="1700.80"))
    await fake.wait_for("chat.postMessage")
    await fake.send_envelope("events_api", mention("second", ts="1700.81"))
    eph = await fake.wait_for("chat.postEphemeral")
    assert "too many requests" in eph.args["text"] and eph.args["thread_ts"] == "1700.81"


async def test_add_files_shortcut_and_modal(socket_app, service):
    fake = await socket_app()
    await fake.send_envelope("interactive", {
        "type": "shortcut", "callback_id": "pixrag_add_files", "trigger_id": "trig-9",
        "team": {"id": "T1"}, "user": {"id": "U1", "team_id": "T1"}, "token": "legacy"})
    opened = await fake.wait_for("views.open")
    view = opened.args["view"]
    view = json.loads(view) if isinstance(view, str) else view
    assert opened.args["trigger_id"] == "trig-9" and view["callback_id"] == render.INDEX_MODAL

    file = fake.add_file(png(mark=4), "added.png", "image/png")
    view["state"] = {"values": {render.INDEX_BLOCK: {render.INDEX_ACTION: {
        "type": "file_input", "files": [file]}}}}
    view["id"] = "V1"
    env = await fake.send_envelope("interactive", {
        "type": "view_submission", "team": {"id": "T1"}, "user": {"id": "U1", "team_id": "T1"},
        "view": view, "token": "legacy", "trigger_id": "trig-10"})
    assert await fake.wait_ack(env) == {"envelope_id": env}
    dm = await fake.wait_for("chat.postMessage")
    assert dm.args["channel"] == "U1" and "Indexed 1 item" in dm.args["text"]
    (hit,) = await service.similar(png(mark=4), _scope("C1"))
    assert hit.origin.attachment == file["id"] and hit.origin.author == "U1"


@pytest.mark.allow_error_logs
async def test_unexpected_error_is_logged_and_user_gets_apology(socket_app, service, caplog):
    fake = await socket_app()
    file = fake.add_file(png(), "a.png", "image/png")
    broken = {"type": "message", "user": "U2", "text": "", "files": [file]}  # no "ts"
    payload = message_shortcut(INDEX_MESSAGE_SHORTCUT, {**broken, "ts": "x"},
                               response_url=fake.response_url())
    del payload["message"]["ts"]
    await fake.send_envelope("interactive", payload)
    resp = await fake.wait_for("respond")
    assert resp.args["text"] == msg.APOLOGY
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert [r.name for r in errors] == ["bot.slack.app"]
    assert "KeyError" not in resp.args["text"]


# -- helpers ------------------------------------------------------------------------------------

async def _final(fake):
    """The finished answer: the last edit of the streamed message carries the blocks."""
    return await fake.wait_for("chat.update", lambda c: bool(c.args.get("blocks")))


def _scope(channel: str, team: str = "T1"):
    from core.types import Scope

    return Scope(space=f"slack:{team}", channel=channel)


async def _count(service: Any, space: str) -> int:
    return (await service.stats(space)).items


async def _until(probe, expected, timeout: float = 10.0) -> None:
    """Poll the service (not Slack) until a background listener's effect is visible."""
    import asyncio

    async def loop() -> None:
        while await probe() != expected:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(loop(), timeout)


async def test_redelivered_envelope_indexes_and_reacts_once(socket_app, service, request, caplog):
    """Socket Mode redelivers an event (``retry_attempt``) whose ack came late: the files are
    downloaded and indexed once, and the poster gets one reaction."""
    from tests.slack.conftest import drain_listeners

    fake = await socket_app()
    await service.set_autoindex("slack:T1", "C9", True)
    file = fake.add_file(png((90, 200, 90), mark=4), "chart.png", "image/png")
    body = message("", channel="C9", channel_type="channel", ts="1700.6", files=[file])
    first = await fake.send_envelope("events_api", body)
    again = await fake.send_envelope("events_api", body)
    assert await fake.wait_ack(again) == {"envelope_id": again}
    await fake.wait_ack(first)
    await drain_listeners(request, caplog)
    assert len(fake.of("file")) == 1
    assert len(fake.of("reactions.add")) == 1
    assert (await service.stats("slack:T1")).items == 1


async def test_org_wide_install_answers_from_the_workspace_asked_in(socket_app, service):
    """Installed org-wide (Enterprise Grid), events carry no team in ``authorizations``: the
    workspace is the event's own ``team_id``, never one space shared by the whole org."""
    notes = b"# Roadmap\n\nThe quarterly revenue forecast lives in the finance wiki."
    await service.index_uploads([upload("t2-roadmap.md", notes)], "slack:T2")
    await service.index_uploads([upload("t3-roadmap.md", notes)], "slack:T3")
    fake = await socket_app()
    body = mention("where is the quarterly revenue forecast?", ts="1700.7", team="T2")
    body["enterprise_id"] = "E1"
    body["authorizations"] = [{"enterprise_id": "E1", "team_id": None, "user_id": "UBOT",
                               "is_bot": True, "is_enterprise_install": True}]
    await fake.send_envelope("events_api", body)
    final = await _final(fake)
    assert "t2-roadmap.md" in _texts(final)
    assert "t3-roadmap.md" not in _texts(final)


async def test_file_download_that_times_out_names_the_file(socket_app, service, monkeypatch):
    """A file host that stops answering: the user is told which file could not be fetched
    (a safe message), not a generic apology for a bug."""
    import asyncio

    import aiohttp

    from bot.slack import download

    monkeypatch.setattr(download, "_TIMEOUT", aiohttp.ClientTimeout(total=0.5))
    fake = await socket_app()
    fake.file_hold = asyncio.Event()  # never answers while the test waits
    file = fake.add_file(png(), "stuck.png", "image/png")
    try:
        await fake.send_envelope("events_api", mention("what is this?", files=[file],
                                                       ts="1700.8"))
        eph = await fake.wait_for("chat.postEphemeral")
    finally:
        fake.file_hold.set()
    assert "stuck.png" in eph.args["text"] and msg.FILE_UNREACHABLE in eph.args["text"]
    assert msg.APOLOGY not in eph.args["text"]


async def test_a_channel_shared_with_another_organisation_sees_only_its_own_files(
        socket_app, service):
    # Everyone in a Slack Connect channel reads the answers, people of the other organisation
    # too: the workspace's public files must not be shown there.
    notes = b"The onboarding slide deck explains the expense policy."
    await service.index_uploads([upload("slide.md", notes, channel="C1")], "slack:T1")
    fake = await socket_app(admins=["UADMIN"])
    fake.channels["C7"] = {"is_shared": True, "is_ext_shared": True}

    # Files posted there are kept there.
    env = await fake.send_envelope("slash_commands", command(
        "/pixrag", "autoindex on", channel="C7", user="UADMIN", response_url=fake.response_url()))
    await fake.wait_ack(env)
    on = await fake.wait_for("respond")
    assert "private" in on.args["text"]
    file = fake.add_file(png((90, 90, 0), mark=3), "theirs.png", "image/png")
    await fake.send_envelope("events_api", message(
        "", channel="C7", channel_type="channel", user="U5", ts="1700.90", files=[file]))
    await fake.wait_for("reactions.add", lambda c: c.args["name"] == "card_index_dividers")
    (hit,) = await service.similar(png((90, 90, 0), mark=3), _scope("C7"))
    assert hit.origin.private and hit.origin.channel == "C7"
    assert await service.similar(png((90, 90, 0), mark=3), _scope("C1")) == []

    # Questions asked there are answered from what was posted there only.
    for n, (channel, shown) in enumerate((("C7", False), ("C1", True)), start=2):
        env = await fake.send_envelope("slash_commands", command(
            "/ask", "expense policy slide?", channel=channel, response_url=fake.response_url()))
        await fake.wait_ack(env)
        resp = await fake.wait_for("respond", count=n)
        assert ("slide.md" in _texts(resp)) is shown, channel
    await fake.send_envelope("events_api", mention("expense policy slide?", channel="C7",
                                                   ts="1700.91"))
    final = await _final(fake)
    assert final.args["channel"] == "C7" and "slide.md" not in _texts(final)
