"""Downloading Slack files (``url_private``) with the bot token, size- and type-checked.

The bot token opens every file the app can see, so it is sent only over https to Slack's own
file hosts (:class:`FileHosts`); redirects are followed by hand, one hop at a time, and only
while they stay on those hosts. Anything else (plain http, another host, a redirect away) is
refused for that file with a clear reason, and no request carrying the token is made.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import yarl

from bot.slack import messages as msg
from bot.slack.convert import file_name
from core.errors import UnsupportedInput

log = logging.getLogger(__name__)

_TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=10)
_HTML_MARKERS = (b"<!doctype html", b"<html", b"<head", b"<!--")
MAX_REDIRECTS = 3
MB = 1024 * 1024

#: Slack's file hosts: where ``url_private`` points and where its downloads redirect.
SLACK_FILE_HOSTS = frozenset({
    "files.slack.com",
    "files-origin.slack.com",
    "files-edge.slack.com",
    "slack-files.com",
    "files.slack-gov.com",
})


@dataclass(frozen=True)
class FileHosts:
    """Where the bot token may go. The app wiring always uses the default (https, Slack's
    hosts); only tests, which serve files from 127.0.0.1, construct another one."""

    hosts: frozenset[str] = SLACK_FILE_HOSTS
    schemes: frozenset[str] = frozenset({"https"})

    def allows(self, url: str) -> bool:
        try:
            parsed = yarl.URL(url)
        except (TypeError, ValueError):
            return False
        return (
            parsed.scheme in self.schemes
            and (parsed.host or "").lower().rstrip(".") in self.hosts
            and not parsed.user  # no credentials smuggled in the URL
        )


def declared_size(file: Mapping[str, Any]) -> int:
    try:
        return max(0, int(file.get("size") or 0))
    except (TypeError, ValueError):
        return 0


def byte_cap(file: Mapping[str, Any], max_mb: float) -> int:
    """The most bytes this file may have: what Slack announced, within the limit."""
    limit = int(max_mb * MB)
    size = declared_size(file)
    return min(size, limit) if size else limit


def check_size(file: Mapping[str, Any], max_mb: float) -> None:
    """Refuse before downloading when Slack says the file is over the limit."""
    if declared_size(file) > max_mb * MB:
        raise UnsupportedInput(file_name(file), msg.FILE_TOO_LARGE.format(limit=max_mb))


def looks_like_html(content_type: str, head: bytes) -> bool:
    """Slack answers an unauthorised file request with a login page (status 200)."""
    if content_type.split(";")[0].strip().lower() in ("text/html", "application/xhtml+xml"):
        return True
    return head.lstrip()[:64].lower().startswith(_HTML_MARKERS)


async def fetch(
    file: Mapping[str, Any], token: str, max_mb: float, hosts: FileHosts | None = None
) -> bytes:
    """The bytes of a Slack file; UnsupportedInput (safe to show) when they cannot be had."""
    hosts = hosts or FileHosts()
    name = file_name(file)
    if file.get("is_external") or file.get("mode") == "external":
        raise UnsupportedInput(name, msg.FILE_EXTERNAL)
    check_size(file, max_mb)
    url = str(file.get("url_private_download") or file.get("url_private") or "")
    if not url:
        raise UnsupportedInput(name, msg.FILE_UNREACHABLE)
    cap = byte_cap(file, max_mb)
    # A session per download: downloads are rare next to their own cost, and the app has
    # no shutdown hook that could close a shared session.
    try:
        async with aiohttp.ClientSession(timeout=_TIMEOUT) as session:
            for _ in range(MAX_REDIRECTS + 1):
                if not hosts.allows(url):
                    log.warning("file %s: refused to send the token to %s",
                                file.get("id"), yarl.URL(url).with_query(None))
                    raise UnsupportedInput(name, msg.FILE_HOST_REFUSED)
                async with session.get(
                    url, headers={"Authorization": f"Bearer {token}"}, allow_redirects=False
                ) as resp:
                    if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                        url = str(resp.url.join(yarl.URL(resp.headers["Location"])))
                        continue
                    return await _read(resp, file, name, cap, max_mb)
            raise UnsupportedInput(name, msg.FILE_UNREACHABLE)  # too many redirects
    except (aiohttp.ClientError, TimeoutError) as exc:
        # aiohttp's total timeout raises the built-in TimeoutError, not a ClientError: a
        # stalled file host is this file's problem, not a bug.
        log.warning("file %s: download failed: %r", file.get("id"), exc)
        raise UnsupportedInput(name, msg.FILE_UNREACHABLE) from exc


async def _read(
    resp: aiohttp.ClientResponse, file: Mapping[str, Any], name: str, cap: int, max_mb: float
) -> bytes:
    if resp.status != 200:
        log.warning("file %s: HTTP %s from Slack", file.get("id"), resp.status)
        raise UnsupportedInput(name, msg.FILE_DOWNLOAD_FAILED.format(status=resp.status))
    # Size is checked while reading: ``size`` in the payload is only a claim.
    buf = bytearray()
    async for chunk in resp.content.iter_chunked(256 * 1024):
        buf += chunk
        if len(buf) > cap:
            raise UnsupportedInput(name, msg.FILE_TOO_LARGE.format(limit=max_mb)
                                   if cap >= max_mb * MB else msg.FILE_LARGER_THAN_SAID)
    data = bytes(buf)
    if looks_like_html(resp.headers.get("Content-Type", ""), data[:512]):
        log.warning("file %s: Slack sent HTML instead of the file", file.get("id"))
        raise UnsupportedInput(name, msg.FILE_NOT_IMAGE)
    return data
