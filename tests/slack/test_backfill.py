"""``/pixrag backfill`` and the App Home button end to end: real slack-bolt / slack-sdk against
the fake's paginated ``conversations.history`` / ``conversations.replies``."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

import bot.backfill
from bot.slack import backfill as slack_backfill
from bot.slack import messages as msg
from bot.slack.app import build_app, serve_socket
from core.errors import PixragError
from core.types import Scope
from tests.slack.conftest import TEST_FILE_HOSTS, drain_listeners, png, slack_settings
from tests.slack.fakeslack import APP_TOKEN, FakeSlack, command, event_body

T0 = 1735689600.0  # 2025-01-01
SPACE = "slack:T1"


@pytest.fixture
def settings(settings):
    """No OCR (it costs seconds per image here), no CLIP relevance floor (random tiny-CLIP
    scores mean nothing): these tests are about walking history."""
    retrieval = settings.retrieval.model_copy(update={"min_clip": -1.0, "min_clip_image": -1.0})
    return settings.model_copy(update={
        "index": settings.index.model_copy(update={"ocr": False}), "retrieval": retrieval})


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(slack_backfill, "PAGE_SIZE", 40)  # several pages from a small history
    monkeypatch.setattr(slack_backfill, "PACE_S", 0.0)
    monkeypatch.setattr(bot.backfill, "REPORT_EVERY_S", 0.0)  # every progress edit is sent


async def _cancel(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 20)


def backfill_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("pixrag-backfill:")]


@pytest.fixture
async def app(
    fake: FakeSlack, service: Any, settings: Any, secrets: Any, web_client: Any,
    request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture,
) -> AsyncIterator[tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]]:
    """(start, stop): the app in Socket Mode; ``stop`` is a process dying, backfills included."""
    tasks: list[asyncio.Task[Any]] = []

    async def start() -> None:
        fake._ws_ready.clear()
        built = build_app(service, slack_settings(settings), secrets, client=web_client,
                          file_hosts=TEST_FILE_HOSTS)
        tasks.append(asyncio.create_task(serve_socket(built, APP_TOKEN)))
        await fake.wait_connected()

    async def stop() -> None:
        await _cancel(backfill_tasks())
        await _cancel(tasks)
        tasks.clear()

    yield start, stop
    await drain_listeners(request, caplog)
    await stop()


def file_message(fake: FakeSlack, ts: float, n: int, *, user: str = "U7",
                 **extra: Any) -> dict[str, Any]:
    file = fake.add_file(png(((n * 37) % 256, (n * 91) % 256, (n * 53) % 256), 40 + n % 9,
                             mark=n % 7), f"shot-{n}.png", "image/png")
    return {"type": "message", "user": user, "text": f"shot {n}", "ts": f"{ts:.6f}",
            "files": [file], "subtype": "file_share", **extra}


def seed(fake: FakeSlack, channel: str, n: int, every: int) -> list[dict[str, Any]]:
    msgs = []
    for i in range(n):
        ts = T0 + i * 3600
        if i % every == 0:
            msgs.append(file_message(fake, ts, i))
        else:
            msgs.append({"type": "message", "user": "U7", "text": f"chat {i}", "ts": f"{ts:.6f}"})
    fake.history.setdefault(channel, []).extend(msgs)
    fake.channels.setdefault(channel, {})["created"] = int(T0) - 86400
    return msgs


def file_ids(msgs: list[dict[str, Any]]) -> list[str]:
    return [f["id"] for m in msgs for f in m.get("files", [])]


async def by_attachment(service: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in service.library.catalog.all(SPACE):
        counts[row.attachment] = counts.get(row.attachment, 0) + 1
    return counts


async def slash(fake: FakeSlack, text: str, channel: str = "C2", user: str = "UADMIN") -> str:
    env = await fake.send_envelope("slash_commands", command(
        "/pixrag", text, channel=channel, user=user, response_url=fake.response_url()))
    await fake.wait_ack(env)
    return env


def update_texts(fake: FakeSlack, channel: str, start: int = 0) -> list[str]:
    return [c.args.get("text", "") for c in fake.calls[start:]
            if c.method == "chat.update" and c.args.get("channel") == channel]


async def final_update(fake: FakeSlack, channel: str, word: str, start: int = 0) -> Any:
    def done() -> bool:
        return any(word in t for t in update_texts(fake, channel, start))

    async with fake._cond:
        await asyncio.wait_for(fake._cond.wait_for(done), 120)
    return next(c for c in fake.calls[start:] if c.method == "chat.update"
                and c.args.get("channel") == channel and word in c.args.get("text", ""))


async def test_backfill_resumes_after_restart_skips_what_is_indexed_and_survives_429(
    app, fake: FakeSlack, service
) -> None:
    start, stop = app
    fake.users["UADMIN"] = {"is_admin": True}
    history = seed(fake, "C1", 240, 8)  # 30 files over 6 pages of 40
    # A thread under an old message: its replies' files come with the parent's page.
    parent = history[1]
    parent.update(reply_count=2, thread_ts=parent["ts"])
    reply = file_message(fake, float(parent["ts"]) + 60, 500, thread_ts=parent["ts"])
    fake.threads[("C1", parent["ts"])] = [parent, reply, {
        "type": "message", "user": "U7", "text": "nice", "ts": f"{float(parent['ts']) + 61:.6f}",
        "thread_ts": parent["ts"]}]
    # What live auto-indexing would not take either, and a file over the size limit.
    late = T0 + 300 * 3600
    by_bot = file_message(fake, late, 900, bot_id="BOTHER")
    joined = file_message(fake, late + 1, 901, subtype="channel_join")
    too_big = file_message(fake, T0 - 100, 902)  # the oldest: read on the last page
    too_big["files"][0]["size"] = 500 * 1024 * 1024
    fake.history["C1"] += [by_bot, joined, too_big]
    wanted = file_ids(history) + file_ids([reply])
    assert len(wanted) == 31

    # -- first run, stopped (the process dies) after its first page
    await start()
    await slash(fake, "backfill <#C1|design>")
    started = await fake.wait_for("respond")
    assert started.args["text"] == msg.BACKFILL_STARTED.format(channel="C1")
    assert started.args["response_type"] == "ephemeral"
    post = await fake.wait_for("chat.postMessage", lambda c: c.args.get("channel") == "C1")
    blocks = post.args["blocks"]
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    (button,) = [e for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert button["action_id"] == slack_backfill.CANCEL_ACTION and button["value"] == "C1"

    async def first_page_done() -> bool:
        return bool(await service.get_state(SPACE, "backfill:C1"))

    deadline = asyncio.get_running_loop().time() + 60
    while not await first_page_done():
        assert asyncio.get_running_loop().time() < deadline, "no page finished in time"
        await asyncio.sleep(0.02)
    await stop()
    cursor = json.loads(await service.get_state(SPACE, "backfill:C1"))
    first_run = await by_attachment(service)
    assert 1 <= len(first_run) < 31, first_run
    assert cursor["until"] and cursor["top"] == joined["ts"] and cursor["done"] is None

    # -- after the restart: the same command continues below the cursor, through 429s
    fake.rate_limits.update({"conversations.history": 2, "conversations.replies": 1})
    mark = len(fake.calls)
    await start()
    await slash(fake, "backfill <#C1|design>")
    final = await final_update(fake, "C1", "finished", mark)

    reads = [c for c in fake.calls[mark:] if c.method == "conversations.history"]
    assert reads[0].args["latest"] == cursor["until"]  # resumed, not from the newest message
    assert fake.rate_limits == {"conversations.history": 0, "conversations.replies": 0}
    counts = await by_attachment(service)
    assert sorted(counts) == sorted(wanted)  # every file, thread replies included
    assert set(counts.values()) == {1}  # nothing indexed twice
    downloaded = {c.args["file_id"] for c in fake.calls[mark:] if c.method == "file"}
    assert not downloaded & set(first_run)  # indexed before the restart: skipped by id
    assert not downloaded & set(file_ids([by_bot, joined, too_big]))  # never fetched

    text = final.args["text"]
    assert "1 failed" in text and "`shot-902.png`" in text and "MB" in text
    assert all(b["type"] != "actions" for b in final.args["blocks"])  # no Cancel any more
    assert any(" of ~" in t for t in update_texts(fake, "C1", mark)[:-1])

    # Same Origin as a live upload: the reply is filed under its channel and its own link.
    rows = service.library.catalog.find(SPACE, attachment=reply["files"][0]["id"])
    origin = (await service.item(SPACE, rows[0].id)).origin
    assert origin.channel == "C1" and origin.message == reply["ts"] and not origin.private
    assert origin.author == "U7" and origin.link.endswith(reply["ts"].replace(".", ""))

    # Run again: only what is newer than the finished run is read; nothing is downloaded.
    mark = len(fake.calls)
    await slash(fake, "backfill <#C1|design>")
    again = await final_update(fake, "C1", "finished", mark)
    (read,) = [c for c in fake.calls[mark:] if c.method == "conversations.history"]
    assert read.args["oldest"].startswith(joined["ts"].split(".")[0])
    assert not [c for c in fake.calls[mark:] if c.method == "file"]
    assert "indexed 0 files, 0 failed" in again.args["text"]


async def test_app_home_button_private_channel_and_cancel(app, fake: FakeSlack, service) -> None:
    start, _ = app
    fake.users["UADMIN"] = {"is_admin": True}
    seed(fake, "G1", 80, 2)  # a private channel (G...): 40 files
    await start()

    # Admins see the button in App Home; others do not.
    for user, has_button in (("U2", False), ("UADMIN", True)):
        await fake.send_envelope("events_api", event_body(
            {"type": "app_home_opened", "user": user, "channel": "D1", "tab": "home",
             "event_ts": "1700.70"}))
        pub = await fake.wait_for("views.publish", lambda c, u=user: c.args["user_id"] == u)
        view = pub.args["view"]
        view = json.loads(view) if isinstance(view, str) else view
        assert (slack_backfill.HOME_ACTION in json.dumps(view)) is has_button

    # Slash command from a non-admin: refused, nothing read.
    await slash(fake, "backfill <#G1|staff>", user="U2")
    denied = await fake.wait_for("respond")
    assert msg.NOT_ADMIN in denied.args["text"]
    assert not fake.of("conversations.history")
    await slash(fake, "backfill <#G1|staff> yesterday")
    usage = await fake.wait_for("respond", count=2)
    assert "Usage" in usage.args["text"]

    # The button opens a modal; submitting it starts the run (progress goes to the channel).
    await fake.send_envelope("interactive", {
        "type": "block_actions", "team": {"id": "T1"}, "user": {"id": "UADMIN", "team_id": "T1"},
        "api_app_id": "A1", "token": "legacy", "trigger_id": "trig-home",
        "container": {"type": "view", "view_id": "VHOME"},
        "actions": [{"type": "button", "action_id": slack_backfill.HOME_ACTION,
                     "block_id": "b", "action_ts": "1"}]})
    opened = await fake.wait_for("views.open")
    modal = opened.args["view"]
    modal = json.loads(modal) if isinstance(modal, str) else modal
    assert modal["callback_id"] == slack_backfill.MODAL
    fake.file_hold = asyncio.Event()
    modal.update(id="V1", state={"values": {
        slack_backfill.MODAL_CHANNEL: {slack_backfill.MODAL_CHANNEL: {
            "type": "conversations_select", "selected_conversation": "G1"}},
        slack_backfill.MODAL_SINCE: {slack_backfill.MODAL_SINCE: {
            "type": "datepicker", "selected_date": None}}}})
    await fake.send_envelope("interactive", {
        "type": "view_submission", "team": {"id": "T1"},
        "user": {"id": "UADMIN", "team_id": "T1"}, "view": modal, "token": "legacy",
        "trigger_id": "trig-11"})
    dm = await fake.wait_for("chat.postMessage", lambda c: c.args.get("channel") == "UADMIN")
    assert dm.args["text"] == msg.BACKFILL_STARTED.format(channel="G1")
    await fake.wait_for("chat.postMessage", lambda c: c.args.get("channel") == "G1")

    # Cancel while the first downloads are held: the run stops after the files in hand.
    await fake.wait_for("file")

    def press(user: str) -> dict[str, Any]:
        return {
            "type": "block_actions", "team": {"id": "T1"}, "user": {"id": user, "team_id": "T1"},
            "api_app_id": "A1", "token": "legacy", "trigger_id": "trig-c",
            "container": {"type": "message", "message_ts": fake.posted[-1], "channel_id": "G1"},
            "channel": {"id": "G1"}, "message": {"ts": fake.posted[-1], "text": "progress"},
            "response_url": fake.response_url(),
            "actions": [{"type": "button", "action_id": slack_backfill.CANCEL_ACTION,
                         "block_id": "b", "value": "G1", "action_ts": "2"}]}

    await fake.wait_ack(await fake.send_envelope("interactive", press("U2")))
    refused = await fake.wait_for("respond", lambda c: msg.NOT_ADMIN in c.args.get("text", ""))
    assert refused.args["response_type"] == "ephemeral"
    await fake.wait_ack(await fake.send_envelope("interactive", press("UADMIN")))
    cancelling = await fake.wait_for("respond", lambda c: "Stopping" in c.args.get("text", ""))
    assert cancelling.args["text"] == msg.BACKFILL_CANCELLING.format(channel="G1")
    fake.file_hold.set()
    final = await final_update(fake, "G1", "cancelled")
    assert all(b["type"] != "actions" for b in final.args["blocks"])
    indexed = await by_attachment(service)
    assert 1 <= len(indexed) <= 2  # the files in hand when Cancel was pressed
    assert await service.get_state(SPACE, "backfill:G1") is None  # page 1 was cut short

    # The private-channel rule, exactly as for live items.
    rows = service.library.catalog.all(SPACE)
    assert rows and all(r.private and r.channel == "G1" for r in rows)
    assert await service.search("image", Scope(space=SPACE, channel="C1")) == []
    assert await service.search("image", Scope(space=SPACE, channel="G1"))


def test_command_arguments() -> None:
    assert slack_backfill.parse_args("", "C9") == ("C9", None)
    assert slack_backfill.parse_args("<#C123|design> 2024-05-31", "C9") == ("C123", "2024-05-31")
    assert slack_backfill.parse_args("2024-05-31 <#G77>", "C9") == ("G77", "2024-05-31")
    with pytest.raises(PixragError, match="Usage"):
        slack_backfill.parse_args("#design", "C9")  # unescaped: no id to read history with
    with pytest.raises(PixragError, match="not a date"):
        slack_backfill.since_ts("2024-13-45")
    assert slack_backfill.since_ts("2025-01-01") == T0
