"""Downloading Slack files (``url_private``) with the bot token, size- and type-checked."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import aiohttp

from bot.slack import messages as msg
from bot.slack.convert import file_name
from core.errors import UnsupportedInput

log = logging.getLogger(__name__)

_TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=10)
_HTML_MARKERS = (b"<!doctype html", b"<html", b"<head", b"<!--")


def check_size(file: Mapping[str, Any], max_mb: float) -> None:
    """Refuse before downloading when Slack says the file is over the limit."""
    size = int(file.get("size") or 0)
    if size > max_mb * 1024 * 1024:
        raise UnsupportedInput(file_name(file), msg.FILE_TOO_LARGE.format(limit=max_mb))


def looks_like_html(content_type: str, head: bytes) -> bool:
    """Slack answers an unauthorised file request with a login page (status 200)."""
    if content_type.split(";")[0].strip().lower() in ("text/html", "application/xhtml+xml"):
        return True
    return head.lstrip()[:64].lower().startswith(_HTML_MARKERS)


async def fetch(file: Mapping[str, Any], token: str, max_mb: float) -> bytes:
    """The bytes of a Slack file; UnsupportedInput (safe to show) when they cannot be had."""
    name = file_name(file)
    if file.get("is_external") or file.get("mode") == "external":
        raise UnsupportedInput(name, msg.FILE_EXTERNAL)
    check_size(file, max_mb)
    url = file.get("url_private_download") or file.get("url_private")
    if not url:
        raise UnsupportedInput(name, msg.FILE_UNREACHABLE)
    limit = int(max_mb * 1024 * 1024)
    # A session per download: downloads are rare next to their own cost, and the app has
    # no shutdown hook that could close a shared session.
    try:
        async with (
            aiohttp.ClientSession(timeout=_TIMEOUT) as session,
            session.get(str(url), headers={"Authorization": f"Bearer {token}"}) as resp,
        ):
            if resp.status != 200:
                log.warning("file %s: HTTP %s from Slack", file.get("id"), resp.status)
                raise UnsupportedInput(name, msg.FILE_DOWNLOAD_FAILED.format(status=resp.status))
            # Size is checked again while reading: ``size`` in the payload is only a claim.
            buf = bytearray()
            async for chunk in resp.content.iter_chunked(256 * 1024):
                buf += chunk
                if len(buf) > limit:
                    raise UnsupportedInput(name, msg.FILE_TOO_LARGE.format(limit=max_mb))
            data = bytes(buf)
            if looks_like_html(resp.headers.get("Content-Type", ""), data[:512]):
                log.warning("file %s: Slack sent HTML instead of the file", file.get("id"))
                raise UnsupportedInput(name, msg.FILE_NOT_IMAGE)
            return data
    except aiohttp.ClientError as exc:
        log.warning("file %s: download failed: %s", file.get("id"), exc)
        raise UnsupportedInput(name, msg.FILE_UNREACHABLE) from exc
