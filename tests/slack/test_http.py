"""HTTP mode: signed requests are served, unsigned or tampered ones are refused (401)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from urllib.parse import urlencode

import aiohttp
import pytest

from tests.slack.conftest import SIGNING_SECRET, upload
from tests.slack.fakeslack import FakeSlack, command, event_body


def sign(body: bytes, ts: int, secret: str = SIGNING_SECRET) -> str:
    base = f"v0:{ts}:".encode() + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def signed_headers(body: bytes, *, ts: int | None = None, secret: str = SIGNING_SECRET,
                   content_type: str = "application/json") -> dict[str, str]:
    ts = int(time.time()) if ts is None else ts
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": sign(body, ts, secret),
            "Content-Type": content_type}


async def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.post(
        url, data=body, headers=headers
    ) as resp:
        return resp.status, await resp.text()


HOME = json.dumps(event_body({"type": "app_home_opened", "user": "U1", "channel": "D1",
                              "tab": "home", "event_ts": "1700.1"})).encode()


async def test_signed_event_is_served(http_app: str, fake: FakeSlack):
    status, _ = await post(http_app, HOME, signed_headers(HOME))
    assert status == 200
    pub = await fake.wait_for("views.publish")
    assert pub.args["user_id"] == "U1"


@pytest.mark.parametrize("case", ["wrong secret", "stale timestamp", "missing headers",
                                  "tampered body"])
async def test_bad_signature_is_401_and_calls_nothing(case: str, http_app: str, fake: FakeSlack):
    body, headers = HOME, signed_headers(HOME)
    if case == "wrong secret":
        headers = signed_headers(HOME, secret="not-the-secret")
    elif case == "stale timestamp":
        headers = signed_headers(HOME, ts=int(time.time()) - 6 * 60)
    elif case == "missing headers":
        headers = {"Content-Type": "application/json"}
    else:
        body = HOME.replace(b'"U1"', b'"U6"')
    status, _ = await post(http_app, body, headers)
    assert status == 401
    # A valid request afterwards is served; by then nothing of the refused one happened.
    status, _ = await post(http_app, HOME, signed_headers(HOME))
    assert status == 200
    await fake.wait_for("views.publish")
    assert [c.args["user_id"] for c in fake.of("views.publish")] == ["U1"]
    # users.info: App Home shows admins the backfill button.
    assert [c.method for c in fake.calls] == ["auth.test", "users.info", "views.publish"]


async def test_ask_command_over_http(http_app: str, fake: FakeSlack, service):
    notes = b"The security review deck covers password rotation."
    await service.index_uploads([upload("deck.md", notes)], "slack:T1")
    form = urlencode(command("/ask", "password rotation?",
                             response_url=fake.response_url())).encode()
    status, text = await post(http_app, form, signed_headers(
        form, content_type="application/x-www-form-urlencoded"))
    assert status == 200 and "password rotation?" in text  # the ack, within Slack's 3 s
    resp = await fake.wait_for("respond")
    assert resp.args["response_type"] == "in_channel" and "deck.md" in json.dumps(resp.args)


async def test_redelivered_event_is_answered_once(http_app: str, fake: FakeSlack, service,
                                                  request, caplog):
    """Slack sends an event again (``X-Slack-Retry-Num``) when the first answer took over
    3 s: the retry is acknowledged and not handled a second time."""
    from tests.slack.conftest import drain_listeners
    from tests.slack.fakeslack import mention

    body = json.dumps(mention("what is in the deck?", ts="1700.5")).encode()
    status, _ = await post(http_app, body, signed_headers(body))
    assert status == 200
    retry = {**signed_headers(body), "X-Slack-Retry-Num": "1",
             "X-Slack-Retry-Reason": "http_timeout"}
    status, _ = await post(http_app, body, retry)
    assert status == 200  # acknowledged, so Slack stops retrying
    await drain_listeners(request, caplog)
    assert len(fake.of("reactions.add")) == 1
    assert len(fake.of("chat.postMessage")) == 1
