"""Trust at the Slack edge: where the bot token goes, the upload budget, error messages,
escaping, and Slack being down at start."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack import messages as msg
from bot.slack import render
from bot.slack.app import run_slack
from bot.slack.download import FileHosts
from bot.slack.interactive import INDEX_MESSAGE_SHORTCUT
from bot.startup import PlatformUnreachable, Retry
from core.admission import Admission
from core.config import Secrets
from core.errors import ConfigError, StoreError
from core.types import Answer, Hit, Origin
from tests.slack.conftest import png
from tests.slack.fakeslack import APP_TOKEN, BOT_TOKEN, command, message, message_shortcut

SECRET_PATH = "/srv/pixrag-secret/data/keyword.sqlite"
FAST = Retry(attempts=3, first_delay_s=0.01, timeout_s=5.0)


def _index_shortcut(fake, files: list[dict[str, Any]], ts: str = "1700.60") -> dict[str, Any]:
    msg_payload = {"type": "message", "user": "U2", "ts": ts, "text": "", "files": files}
    return message_shortcut(INDEX_MESSAGE_SHORTCUT, msg_payload, response_url=fake.response_url())


# -- the bot token goes to Slack's file hosts only ----------------------------------------------

async def test_production_hosts_refuse_plain_http_and_send_no_token(socket_app, service):
    fake = await socket_app(file_hosts=FileHosts())  # what the app wiring uses
    file = fake.add_file(png(mark=1), "cat.png", "image/png")  # http://127.0.0.1:PORT/...
    await fake.send_envelope("interactive", _index_shortcut(fake, [file]))
    resp = await fake.wait_for("respond")
    assert "cat.png" in resp.args["text"] and "Slack's own file servers" in resp.args["text"]
    assert fake.of("file") == [] and fake.of("redirect") == []  # no request at all
    assert (await service.stats("slack:T1")).items == 0


def test_file_hosts_policy() -> None:
    hosts = FileHosts()
    assert hosts.allows("https://files.slack.com/files-pri/T1-F1/cat.png")
    assert not hosts.allows("http://files.slack.com/files-pri/T1-F1/cat.png")
    assert not hosts.allows("https://files.slack.com.evil.example/x.png")
    assert not hosts.allows("https://evil.example/files.slack.com/x.png")
    assert not hosts.allows("https://user:pw@files.slack.com/x.png")
    assert not hosts.allows("not a url")


async def test_redirect_to_another_host_is_not_followed(socket_app, service):
    fake = await socket_app()
    file = fake.add_file(png(mark=2), "moved.png", "image/png")
    elsewhere = file["url_private_download"].replace("127.0.0.1", "localhost")
    file = {**file, "url_private_download": f"{fake.base}/redirect?to={elsewhere}"}
    await fake.send_envelope("interactive", _index_shortcut(fake, [file]))
    resp = await fake.wait_for("respond")
    assert "moved.png" in resp.args["text"] and "Slack's own file servers" in resp.args["text"]
    (hop,) = fake.of("redirect")
    assert hop.headers["Authorization"] == f"Bearer {BOT_TOKEN}"  # the allowed first hop
    assert fake.of("file") == []  # the token never reached the other host


async def test_redirect_within_the_allowed_hosts_is_followed(socket_app, service):
    fake = await socket_app()
    file = fake.add_file(png(mark=3), "hop.png", "image/png")
    file = {**file, "url_private_download": f"{fake.base}/redirect?to={file['url_private']}"}
    await fake.send_envelope("interactive", _index_shortcut(fake, [file]))
    resp = await fake.wait_for("respond")
    assert "Indexed 1 item" in resp.args["text"]
    (got,) = fake.of("file")
    assert got.headers["Authorization"] == f"Bearer {BOT_TOKEN}"


# -- the process-wide upload budget -------------------------------------------------------------

async def test_upload_flood_waits_for_room_and_questions_are_answered(socket_app, service):
    service.admission = Admission(max_files=2, max_bytes=64 * 1024 * 1024)
    fake = await socket_app(admins=["UADMIN"])
    await fake.send_envelope("slash_commands", command(
        "/pixrag", "autoindex on", user="UADMIN", response_url=fake.response_url()))
    await fake.wait_for("respond")
    fake.file_gate = asyncio.Event()
    for n in range(6):
        file = fake.add_file(png(mark=n, size=48 + n), f"f{n}.png", "image/png")
        await fake.send_envelope("events_api", message(
            "", channel="C1", channel_type="channel", ts=f"1700.9{n}", files=[file]))

    async def two_downloading_four_waiting() -> None:
        while not (fake.files_in_flight == 2 and service.admission.waiting == 4):
            await asyncio.sleep(0.02)

    await asyncio.wait_for(two_downloading_four_waiting(), 15)
    # A question is answered while the uploads wait.
    await fake.send_envelope("slash_commands", command(
        "/ask", "anything here?", response_url=fake.response_url()))
    answered = await fake.wait_for("respond", lambda c: c.args.get("response_type") == "in_channel")
    assert answered.args["text"]
    assert fake.files_in_flight == 2 and len(fake.of("file")) == 2

    fake.file_gate.set()
    await fake.wait_for("reactions.add", lambda c: c.args["name"] == "card_index_dividers",
                        count=6, timeout=60)
    assert fake.files_max_in_flight == 2
    assert service.admission.files_in_flight == 0 and service.admission.bytes_in_flight == 0


async def test_autoindex_is_rate_limited_per_channel(socket_app, service):
    fake = await socket_app(admins=["UADMIN"], autoindex_per_minute=1)
    for channel in ("C1", "C2"):
        await fake.send_envelope("slash_commands", command(
            "/pixrag", "autoindex on", channel=channel, user="UADMIN",
            response_url=fake.response_url()))
        await fake.wait_for("respond", count=1 if channel == "C1" else 2)
    for n, channel in enumerate(("C1", "C1", "C2")):
        file = fake.add_file(png(mark=n + 1), f"r{n}.png", "image/png")
        await fake.send_envelope("events_api", message(
            "", channel=channel, channel_type="channel", ts=f"1701.{n}", files=[file]))
    await fake.wait_for("reactions.add", count=2)
    await asyncio.sleep(0.3)
    indexed = {c.args["timestamp"] for c in fake.of("reactions.add")}
    # One of the two posts in C1 (listeners run concurrently: either may come first) and
    # the one in C2; the other C1 post this minute is skipped.
    assert "1701.2" in indexed and len(indexed & {"1701.0", "1701.1"}) == 1
    assert len(fake.of("file")) == 2


async def test_download_stops_past_the_announced_size(socket_app, service):
    fake = await socket_app()
    data = png(size=400)
    file = fake.add_file(data, "liar.png", "image/png", size=100)
    await fake.send_envelope("interactive", _index_shortcut(fake, [file]))
    resp = await fake.wait_for("respond")
    assert "liar.png" in resp.args["text"] and msg.FILE_LARGER_THAN_SAID in resp.args["text"]


# -- errors and escaping ------------------------------------------------------------------------

@pytest.mark.allow_error_logs
async def test_store_failure_shows_the_fixed_sentence_not_the_path(socket_app, service,
                                                                   monkeypatch):
    async def broken(*args, **kwargs):
        raise StoreError(f"keyword index {SECRET_PATH}: database disk image is malformed")

    monkeypatch.setattr(service, "ask", broken)
    fake = await socket_app()
    await fake.send_envelope("slash_commands", command(
        "/ask", "where is it?", response_url=fake.response_url()))
    resp = await fake.wait_for("respond", lambda c: c.args.get("response_type") == "ephemeral")
    assert StoreError.public in resp.args["text"]
    everything = "\n".join(json.dumps(c.args) + c.body.decode(errors="replace")
                           for c in fake.calls)
    assert SECRET_PATH not in everything and "malformed" not in everything


def test_mrkdwn_links_and_mentions_in_untrusted_text_are_escaped() -> None:
    evil = "<https://evil.example|Reset password> <@U123> <!channel> <!subteam^S1>"
    hit = Hit(id="i1", source="https://test.slack.com/archives/C1/p1", kind="image", score=0.5,
              text=evil, name=f"{evil}.png",
              origin=Origin(link="https://test.slack.com/archives/C1/p1"))
    fallback, blocks = render.hits_message([hit], "*Results*", "q")
    answer = Answer(text=f"See {evil} [1]", citations=[1], sources=[hit], provider="x")
    afallback, ablocks = render.answer_message(answer, "q")
    for text in (fallback, json.dumps(blocks), afallback, json.dumps(ablocks)):
        assert "<https://evil" not in text and "<@U123>" not in text
        assert "<!channel>" not in text and "<!subteam" not in text
    assert "&lt;https://evil.example|Reset password&gt;" in json.dumps(blocks)


# -- Slack down or tokens wrong at start ---------------------------------------------------------

def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_unreachable_slack_gives_up_after_bounded_retries(service, settings, caplog):
    client = AsyncWebClient(token=BOT_TOKEN, base_url=f"http://127.0.0.1:{_closed_port()}/api/")
    secrets = Secrets({"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_APP_TOKEN": APP_TOKEN})
    started = time.monotonic()
    with pytest.raises(PlatformUnreachable) as err:
        await run_slack(service, settings, secrets, client=client, retry=FAST)
    assert time.monotonic() - started < 20
    assert str(err.value).startswith("cannot reach Slack") and "\n" not in str(err.value)
    assert not [r for r in caplog.records if r.exc_info]


@pytest.mark.parametrize(("bot_token", "app_token", "bad"), [
    ("xoxb-wrong", APP_TOKEN, "SLACK_BOT_TOKEN"),
    (BOT_TOKEN, "xapp-wrong", "SLACK_APP_TOKEN"),
])
async def test_rejected_tokens_are_config_errors_without_retries(
    fake, service, settings, bot_token, app_token, bad
):
    client = AsyncWebClient(token=bot_token, base_url=fake.api_url)
    secrets = Secrets({"SLACK_BOT_TOKEN": bot_token, "SLACK_APP_TOKEN": app_token})
    with pytest.raises(ConfigError, match=f"{bad}.*invalid_auth"):
        await run_slack(service, settings, secrets, client=client, retry=FAST)
    assert len(fake.of("auth.test")) == 1
    assert len(fake.of("apps.connections.open")) == (1 if bad == "SLACK_APP_TOKEN" else 0)


async def test_run_slack_connects_when_all_is_well(fake, service, settings, caplog):
    client = AsyncWebClient(token=BOT_TOKEN, base_url=fake.api_url)
    secrets = Secrets({"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_APP_TOKEN": APP_TOKEN})
    task = asyncio.create_task(run_slack(service, settings, secrets, client=client, retry=FAST))

    async def connected() -> None:
        while not any("Slack app connected" in r.getMessage() for r in caplog.records):
            await asyncio.sleep(0.02)

    try:
        await asyncio.wait_for(connected(), 15)
        assert not task.done()
        assert len(fake.of("auth.test")) == 1
    finally:
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=10)
        assert done == {task}


async def test_oauth_env_does_not_drop_the_bot_token(socket_app, service, monkeypatch, caplog):
    monkeypatch.setenv("SLACK_CLIENT_ID", "111.222")
    monkeypatch.setenv("SLACK_CLIENT_SECRET", "shh")
    fake = await socket_app()
    await fake.send_envelope("slash_commands", command(
        "/ask", "anything?", response_url=fake.response_url()))
    answered = await fake.wait_for("respond", lambda c: c.args.get("response_type") == "in_channel")
    assert answered.args["text"]
    assert not [r for r in caplog.records if "will be unused" in r.getMessage()]
    import os

    assert os.environ["SLACK_CLIENT_ID"] == "111.222"  # restored after the build
