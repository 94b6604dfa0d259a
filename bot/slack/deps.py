"""What every handler needs, built once by ``build_app``, plus small Web API look-ups."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.backfill import Backfills
from bot.slack import convert, download
from core.config import Settings
from core.errors import RateLimited, UnsupportedInput
from core.ratelimit import RateLimiter
from core.service import PixRAG
from core.types import Scope, Turn, Upload

log = logging.getLogger(__name__)

CHANNEL_TTL_S = 60.0  # how long a channel's privacy and sharing are taken as known


@dataclass
class Deps:
    service: PixRAG
    settings: Settings
    limiter: RateLimiter
    token: str  # bot token, for url_private downloads
    backfills: Backfills = field(default_factory=Backfills)  # runs in progress
    file_hosts: download.FileHosts = field(default_factory=download.FileHosts)
    autoindex_limiter: RateLimiter = field(init=False)
    channels: ChannelKinds = field(init=False)

    def __post_init__(self) -> None:
        # Per channel: a flood of shares in one channel must not monopolise indexing.
        self.autoindex_limiter = RateLimiter(self.settings.slack.autoindex_per_minute)
        self.channels = ChannelKinds()

    async def scope(self, client: AsyncWebClient, team: str, channel: str, *,
                    admin: bool = False) -> Scope:
        """Who asks from ``channel``: in a channel shared with other organisations or
        workspaces, only what was posted in it is visible (everyone there reads the answer)."""
        kind = await self.channels.get(client, channel)
        return Scope(convert.space_for(team), channel, admin, shared=kind.shared)

    def check_rate(self, team: str, user: str) -> None:
        """RateLimited (safe to show) when this user asked too often in the last minute."""
        self.limiter.check(f"{team}:{user}")

    def autoindex_allowed(self, team: str, channel: str) -> bool:
        """One more auto-indexed message in ``channel`` this minute? (False: skip it.)"""
        try:
            self.autoindex_limiter.check(f"{team}:{channel}")
        except RateLimited:
            return False
        return True

    async def fetch(self, file: Mapping[str, Any]) -> bytes:
        """One query file's bytes, downloaded inside a ticket of the upload budget."""
        async with self.fetched([file], query=True) as (data,):
            if isinstance(data, UnsupportedInput):
                raise data
            return data

    @asynccontextmanager
    async def fetched(
        self, files: Sequence[Mapping[str, Any]], *, query: bool = False
    ) -> AsyncIterator[list[bytes | UnsupportedInput]]:
        """Each file's bytes (or why not), downloaded inside one ticket of the process-wide
        upload budget, held until the block ends: a flood of uploads waits for room.
        ``query``: the file of a question someone waits for, served ahead of queued uploads."""
        max_mb = self.settings.slack.max_file_mb
        total = sum(download.byte_cap(f, max_mb) for f in files)
        async with self.service.admission.admit(max(1, len(files)), total, urgent=query):
            out: list[bytes | UnsupportedInput] = []
            for file in files:
                try:
                    out.append(await download.fetch(file, self.token, max_mb, self.file_hosts))
                except UnsupportedInput as exc:
                    out.append(exc)
            yield out

    async def is_admin(self, client: AsyncWebClient, user: str) -> bool:
        """``[slack] admins`` or a workspace admin/owner (users.info, scope users:read)."""
        if user in self.settings.slack.admins:
            return True
        try:
            info = await client.users_info(user=user)
        except SlackApiError as exc:
            log.warning("users.info %s failed: %s", user, exc.response.get("error"))
            return False
        u = info.get("user") or {}
        return bool(u.get("is_admin") or u.get("is_owner") or u.get("is_primary_owner"))

    @asynccontextmanager
    async def uploads(
        self,
        client: AsyncWebClient,
        *,
        channel: str,
        ts: str,
        author: str,
        files: Sequence[Mapping[str, Any]],
        private: bool | None = None,
    ) -> AsyncIterator[tuple[list[Upload], list[UnsupportedInput]]]:
        """A message's files as Uploads that remember where they came from, inside one
        admission ticket (index them inside the block). ``private``: the channel's privacy
        when the caller already looked it up."""
        if private is None:
            private = (await self.channels.get(client, channel)).private
        link = await permalink(client, channel, ts)
        uploads: list[Upload] = []
        problems: list[UnsupportedInput] = []
        async with self.fetched(files) as datas:
            for file, data in zip(files, datas, strict=True):
                if isinstance(data, UnsupportedInput):
                    problems.append(data)
                    continue
                origin = convert.origin_for(
                    channel=channel,
                    message=ts,
                    file_id=str(file["id"]),
                    author=author,
                    private=private,
                    link=link,
                )
                uploads.append(
                    Upload(name=convert.file_name(file), data=data, source=link, origin=origin)
                )
            yield uploads, problems


@dataclass(frozen=True)
class ChannelKind:
    """What PixRAG must know of a channel to keep items where they belong."""

    private: bool  # its items are found only in it (private channel, DM, shared channel)
    shared: bool  # people of other workspaces or organisations read it (Slack Connect)


#: What an unreadable channel is taken for: leaking a file is worse than hiding one.
UNKNOWN_CHANNEL = ChannelKind(private=True, shared=True)
_SHARED_FLAGS = ("is_shared", "is_ext_shared", "is_org_shared", "is_pending_ext_shared")


async def channel_kind(client: AsyncWebClient, channel: str) -> ChannelKind:
    """A channel's privacy and sharing (conversations.info)."""
    if not channel:
        return ChannelKind(private=False, shared=False)
    try:
        info = await client.conversations_info(channel=channel)
    except SlackApiError as exc:
        log.warning("conversations.info %s failed: %s", channel, exc.response.get("error"))
        return UNKNOWN_CHANNEL
    ch = info.get("channel") or {}
    shared = any(ch.get(flag) for flag in _SHARED_FLAGS)
    private = (shared or convert.is_private_channel_id(channel)
               or any(ch.get(flag) for flag in ("is_private", "is_im", "is_mpim")))
    return ChannelKind(private=bool(private), shared=shared)


async def is_private(client: AsyncWebClient, channel: str) -> bool:
    """Private channels, DMs and channels shared beyond the workspace keep their items to
    themselves."""
    return (await channel_kind(client, channel)).private


class ChannelKinds:
    """:func:`channel_kind` remembered for a minute per channel (bounded): every question
    asks it, and conversations.info has a per-minute limit of its own."""

    def __init__(self, ttl_s: float = CHANNEL_TTL_S, size: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self._known: OrderedDict[str, tuple[float, ChannelKind]] = OrderedDict()

    async def get(self, client: AsyncWebClient, channel: str) -> ChannelKind:
        now = time.monotonic()
        known = self._known.get(channel)
        if known is not None and now - known[0] < self.ttl_s:
            return known[1]
        kind = await channel_kind(client, channel)
        if kind is not UNKNOWN_CHANNEL:  # a failed look-up is asked again next time
            self.remember(channel, kind, now)
        return kind

    def remember(self, channel: str, kind: ChannelKind, now: float | None = None) -> None:
        self._known[channel] = (time.monotonic() if now is None else now, kind)
        self._known.move_to_end(channel)
        while len(self._known) > self.size:
            self._known.popitem(last=False)


async def permalink(client: AsyncWebClient, channel: str, ts: str) -> str:
    try:
        resp = await client.chat_getPermalink(channel=channel, message_ts=ts)
    except SlackApiError as exc:
        log.warning("chat.getPermalink %s/%s failed: %s", channel, ts, exc.response.get("error"))
        return f"https://slack.com/archives/{channel}/p{ts.replace('.', '')}"
    return str(resp.get("permalink") or "")


async def thread_history(
    client: AsyncWebClient,
    *,
    channel: str,
    thread_ts: str,
    before_ts: str,
    asker: str,
    bot_user_id: str | None,
    bot_id: str | None = None,
) -> list[Turn]:
    """Earlier messages of the thread as context for a follow-up question."""
    try:
        resp = await client.conversations_replies(channel=channel, ts=thread_ts, limit=50)
    except SlackApiError as exc:
        log.warning("conversations.replies %s/%s failed: %s", channel, thread_ts,
                    exc.response.get("error"))
        return []
    return convert.history_turns(
        resp.get("messages") or [], before_ts=before_ts, asker=asker,
        bot_user_id=bot_user_id, bot_id=bot_id,
    )
