"""Conversions that decide privacy, spaces and what may be downloaded."""

from __future__ import annotations

import discord
import pytest

from bot.discord import convert, shown
from bot.discord.convert import Refused
from core.config import DiscordSettings
from tests.discord import payloads as P


@pytest.fixture(scope="module")
def state():
    """A real discord.py ConnectionState (a client that never logs in: no network)."""
    return discord.Client(intents=discord.Intents.default())._connection


def _guild(state, gid: int, channels: list[dict], everyone_perms: int = P.MEMBER_PERMS):
    data = P.guild(gid, channels)
    data["roles"][0]["permissions"] = str(everyone_perms)
    return discord.Guild(data=data, state=state)


def test_privacy_from_overwrites_threads_and_dms(state) -> None:
    gid = 10
    pub = P.channel(11, gid)
    sec = P.channel(12, gid, private=True)
    g = _guild(state, gid, [pub, sec])
    assert not convert.is_private(g.get_channel(11))
    assert convert.is_private(g.get_channel(12))
    def thread(tid: int, parent: int, ctype: int = 11) -> discord.Thread:
        data = P.channel(tid, gid, ctype=ctype, parent=parent)
        return discord.Thread(guild=g, state=state, data=data)  # type: ignore[arg-type]

    thread_pub, thread_sec, private_thread = thread(13, 11), thread(14, 12), thread(15, 11, 12)
    assert not convert.is_private(thread_pub) and convert.channel_key(thread_pub) == "11"
    assert convert.is_private(thread_sec)
    assert convert.is_private(private_thread)
    orphan = thread(16, 99)
    assert convert.is_private(orphan)  # parent unknown: fail closed


def test_everyone_without_view_makes_every_channel_private_unless_allowed(state) -> None:
    gid = 20
    allowed = P.channel(22, gid)
    allowed["permission_overwrites"] = [
        {"id": str(gid), "type": 0, "allow": str(P.VIEW_CHANNEL), "deny": "0"}
    ]
    g = _guild(state, gid, [P.channel(21, gid), allowed], everyone_perms=P.SEND_MESSAGES)
    assert convert.is_private(g.get_channel(21))
    assert not convert.is_private(g.get_channel(22))


def test_spaces() -> None:
    assert convert.space_for(5, 9) == "discord:5"
    assert convert.space_for(None, 9) == "discord:dm:9"


@pytest.mark.parametrize("link", [
    "https://discord.com/channels/1/2/3",
    "https://ptb.discord.com/channels/1/2/3",
    "https://discordapp.com/channels/@me/2/3",
])
def test_parse_link_accepts_message_links(link: str) -> None:
    parsed = convert.parse_link(link)
    assert (parsed.channel, parsed.message) == (2, 3)


@pytest.mark.parametrize("link", [
    "https://discord.com.evil.example/channels/1/2/3",
    "http://discord.com/channels/1/2/3",
    "https://discord.com/channels/1/2",
    "nonsense",
])
def test_parse_link_rejects_others(link: str) -> None:
    with pytest.raises(Refused):
        convert.parse_link(link)


def _att(state, url: str, size: int, name: str = "a.png") -> discord.Attachment:
    return discord.Attachment(data=P.attachment(url, name, size), state=state)


def test_attachment_checks_use_metadata_only(state) -> None:
    cfg = DiscordSettings(max_attachment_mb=1, max_attachments=2)
    ok = "https://cdn.discordapp.com/attachments/1/2/a.png"
    convert.check_attachments([_att(state, ok, 1000)], cfg)
    with pytest.raises(Refused, match="limit here is 1 MB"):
        convert.check_attachments([_att(state, ok, 2 * 1024 * 1024)], cfg)
    with pytest.raises(Refused, match="At most 2"):
        convert.check_attachments([_att(state, ok, 1)] * 3, cfg)
    for bad in ("https://cdn.discordapp.com.evil.example/a.png", "http://cdn.discordapp.com/a",
                "https://example.com/a.png"):
        with pytest.raises(Refused, match="hosted elsewhere"):
            convert.check_attachments([_att(state, bad, 1)], cfg)


def test_shown_memory_is_bounded() -> None:
    mem = shown.ShownMemory(size=3)
    tokens = [mem.remember(f"q{i}", [f"id{i}"]) for i in range(5)]
    assert mem.get(tokens[0]) is None and mem.get(tokens[1]) is None
    assert mem.get(tokens[4]) == shown.Shown("q4", ("id4",))
