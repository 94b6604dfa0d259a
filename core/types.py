"""The small frozen values that cross the ``core`` boundary.

Adapters (CLI, Discord, Slack) build ``Scope``/``Origin``/``Upload`` from platform events and
render ``Hit``/``Answer``/``IndexReport``; platform objects never come in here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Kind = Literal["image", "page", "chunk"]
KINDS: tuple[Kind, ...] = ("image", "page", "chunk")

#: ``audience`` value of an item anyone in its space may see.
PUBLIC = "*"
#: An audience no item has: what a shared scope without a channel sees.
NOWHERE = "!none"


@dataclass(frozen=True)
class Origin:
    """Where an item came from inside its space (kept as item metadata)."""

    platform: str = "local"  # local | discord | slack
    channel: str = ""
    message: str = ""  # message id / ts
    attachment: str = ""  # attachment id (Discord) or file id (Slack)
    author: str = ""
    private: bool = False  # private channel / DM: only retrievable in ``channel``
    link: str = ""  # URL of the original message, when there is one

    @property
    def audience(self) -> str:
        return self.channel if self.private and self.channel else PUBLIC


@dataclass(frozen=True)
class Scope:
    """Who is asking: the tenant (space) and where (channel) for the private-channel rule."""

    space: str
    channel: str = ""
    admin: bool = False  # sees private items of every channel in the space (CLI, admin cmds)
    # The channel ``channel`` lives in (a thread's parent): its items are visible here too,
    # while the thread's own private items stay invisible from the parent.
    parent: str = ""
    # A channel people outside the tenant can read (a Slack channel shared with another
    # organisation or workspace): only the channel's own items are visible there, never the
    # space's public ones, or one tenant's files would be shown to another.
    shared: bool = False

    def audiences(self) -> list[str] | None:
        """Audience values visible to this scope; ``None`` means all (admin)."""
        if self.admin:
            return None
        here = list(dict.fromkeys(c for c in (self.channel, self.parent) if c))
        if self.shared:
            return here or [NOWHERE]
        return [PUBLIC, *here]

    def sees(self, audience: str) -> bool:
        """Whether an item with this ``audience`` is visible to this scope."""
        visible = self.audiences()
        return visible is None or audience in visible


@dataclass(frozen=True)
class Upload:
    """Bytes to index that did not come from a local path (chat attachments)."""

    name: str  # file name, used for type hints and messages
    data: bytes
    source: str  # what results show as ``source``: message link / URL / path
    origin: Origin = field(default_factory=Origin)


@dataclass(frozen=True)
class Hit:
    """One search result. ``signals`` says why it matched (signal name -> score/rank info)."""

    id: str
    source: str
    kind: Kind
    score: float
    page: int | None = None
    thumbnail: str | None = None  # path of the JPEG thumbnail on disk
    signals: dict[str, float] = field(default_factory=dict)
    text: str = ""  # best matching text (OCR / page text / chunk), may be ""
    name: str = ""  # display name (file name)
    origin: Origin = field(default_factory=Origin)
    blob: str | None = None  # path of the original bytes (or rendered page) on disk

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source,
            "kind": self.kind,
            "score": round(float(self.score), 6),
            "page": self.page,
            "thumbnail": self.thumbnail,
            "signals": {k: round(float(v), 6) for k, v in self.signals.items()},
        }


@dataclass(frozen=True)
class IndexedItem:
    id: str
    source: str
    kind: Kind
    page: int | None = None


@dataclass(frozen=True)
class Skipped:
    source: str
    reason: str


@dataclass(frozen=True)
class Failed:
    source: str
    error: str


@dataclass
class IndexReport:
    indexed: list[IndexedItem] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    failed: list[Failed] = field(default_factory=list)
    #: Indexed and findable, but a later step failed (OCR, caption): ``error`` says which.
    warnings: list[Failed] = field(default_factory=list)
    #: Items an earlier run left waiting for text whose text this run read (not in the JSON
    #: document, whose shape stays as it is).
    resumed: int = 0

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "indexed": [{"id": i.id, "source": i.source, "kind": i.kind} for i in self.indexed],
            "skipped": [asdict(s) for s in self.skipped],
            "failed": [asdict(f) for f in self.failed],
        }
        if self.warnings:  # only when there are some: the usual document keeps its shape
            doc["warnings"] = [asdict(w) for w in self.warnings]
        return doc

    def extend(self, other: IndexReport) -> None:
        self.indexed.extend(other.indexed)
        self.skipped.extend(other.skipped)
        self.failed.extend(other.failed)
        self.warnings.extend(other.warnings)
        self.resumed += other.resumed


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class Turn:
    """An earlier message of the conversation (thread context for follow-ups).

    ``user``: the person asking now; ``assistant``: this bot's own reply; ``context``: anyone
    else in the thread (another person, another bot). Only ``user`` and ``assistant`` become
    conversation turns; ``context`` is quoted to the model as untrusted data, like sources.
    """

    role: Literal["user", "assistant", "context"]
    text: str
    author: str = ""  # for ``context``: who wrote it, e.g. "another user", "another bot"


@dataclass(frozen=True)
class Answer:
    """A generated (or retrieval-only) answer.

    ``sources`` are numbered 1..n exactly as in the prompt, so citation ``[n]`` is
    ``sources[n-1]``; ``citations`` lists the numbers the text actually cites.
    """

    text: str
    citations: list[int]
    sources: list[Hit]
    provider: str
    model: str = ""
    status: Literal["ok", "no_sources", "unavailable", "no_model"] = "ok"
    usage: Usage = field(default_factory=Usage)

    @property
    def cited(self) -> list[Hit]:
        return [self.sources[n - 1] for n in self.citations if 0 < n <= len(self.sources)]

    @property
    def also_retrieved(self) -> list[Hit]:
        cited = set(self.citations)
        return [h for i, h in enumerate(self.sources, 1) if i not in cited]

    def to_json(self) -> dict[str, Any]:
        return {
            "answer": self.text,
            "citations": list(self.citations),
            "sources": [h.to_json() for h in self.sources],
            "provider": self.provider,
            "model": self.model,
            "status": self.status,
            "usage": asdict(self.usage),
        }


def caption_passage_id(item: str, n: int) -> str:
    """Caption passages are told apart from text passages by their id, so retrieval can weigh
    a vision model's description as a signal of its own."""
    return f"{item}#c{n}"


def is_caption_passage(passage_id: str) -> bool:
    _, sep, tail = passage_id.rpartition("#")
    return bool(sep) and tail.startswith("c")


def glossary_passage_id(item: str, n: int) -> str:
    """The item's text annotated with the meanings of its abbreviations and error messages
    (``core.glossary``): searched like its text, but not keyword-indexed (not on screen)."""
    return f"{item}#g{n}"


def is_glossary_passage(passage_id: str) -> bool:
    _, sep, tail = passage_id.rpartition("#")
    return bool(sep) and tail.startswith("g")


def is_derived_passage(passage_id: str) -> bool:
    """A caption or an annotation: words that are not the item's own."""
    return is_caption_passage(passage_id) or is_glossary_passage(passage_id)


@dataclass(frozen=True)
class Stats:
    items: int
    by_kind: dict[str, int]
    spaces: dict[str, int]
    model: str
    store: str
    text_model: str = ""
    waiting_for_text: int = 0  # items findable by CLIP, OCR/text still queued
    # Items whose caption failed (captions on only; None when captions are off).
    without_caption: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "by_kind": dict(self.by_kind),
            "spaces": dict(self.spaces),
            "model": self.model,
            "text_model": self.text_model,
            "store": self.store,
            "waiting_for_text": self.waiting_for_text,
            **({} if self.without_caption is None else {"without_caption": self.without_caption}),
        }
