"""The platform-neutral backfill runner, against a real service (tiny CLIP, real catalog)."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator

import pytest
from PIL import Image

from bot.backfill import Backfill, Backfills, Candidate, Cursors, Page, Progress
from core.errors import UnsupportedInput
from core.types import Origin, Upload

SPACE = "discord:1"


@pytest.fixture
def settings(settings):
    return settings.model_copy(update={"index": settings.index.model_copy(update={"ocr": False})})


def png(n: int) -> bytes:
    img = Image.new("RGB", (32 + n, 24), ((n * 47) % 256, (n * 89) % 256, 90))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def candidate(n: int, fetched: list[int]) -> Candidate:
    async def fetch() -> Upload:
        fetched.append(n)
        if n == 3:
            raise UnsupportedInput(f"f{n}.png", "too large")
        if n == 4:
            raise RuntimeError("a bug")
        return Upload(f"f{n}.png", png(n), f"https://x/{n}",
                      Origin(platform="discord", channel="c", message=f"m{n}", attachment=f"a{n}"))

    return Candidate(f"a{n}", f"f{n}.png", fetch)


def walker(pages: list[list[int]], fetched: list[int], seen: list[str | None]):
    async def walk(cursors: Cursors) -> AsyncIterator[Page]:
        saved = await cursors.get("c")
        seen.append(saved)
        start = int(saved) if saved else 0
        for i, numbers in enumerate(pages[start:], start + 1):
            yield Page(stream="c", cursor=str(i), position=i / len(pages),
                       candidates=[candidate(n, fetched) for n in numbers])

    return walk


@pytest.mark.allow_error_logs  # the RuntimeError on one file is logged with its traceback
async def test_runner_pages_failures_resume_and_skip(service) -> None:
    pages = [[1, 2], [3, 4, 5], [6]]
    fetched: list[int] = []
    seen: list[str | None] = []
    reports: list[Progress] = []

    async def report(p: Progress) -> None:
        reports.append(Progress(**{**p.__dict__, "reasons": list(p.reasons)}))

    done = await Backfill(service, SPACE, walker(pages, fetched, seen), report,
                          report_every=0).run()
    assert done.finished and not done.cancelled and done.error is None
    assert (done.indexed, done.already, done.failed, done.found) == (4, 0, 2, 6)
    assert done.reasons == [("f3.png", "f3.png: too large"),
                            ("f4.png", "an unexpected error (it has been logged)")]
    assert await service.get_state(SPACE, "backfill:c") == "3"
    assert reports[-1].finished and any(r.estimate for r in reports[:-1])

    # Again from the start (no cursor): every file is known by its id, nothing is fetched.
    await service.set_state(SPACE, "backfill:c", None)
    fetched.clear()
    again = await Backfill(service, SPACE, walker(pages, fetched, seen), report).run()
    assert (again.indexed, again.already) == (0, 4) and sorted(fetched) == [3, 4]

    # With the cursor kept, the walk resumes after the last finished page.
    fetched.clear()
    await Backfill(service, SPACE, walker(pages, fetched, seen), report).run()
    assert seen[-1] == "3" and fetched == []


async def test_one_run_per_channel_and_cancel(service) -> None:
    gate = asyncio.Event()

    async def slow() -> Upload:
        await gate.wait()
        return Upload("s.png", png(9), "https://x/s", Origin(platform="discord", attachment="s"))

    async def walk(cursors: Cursors) -> AsyncIterator[Page]:
        for i in range(3):
            yield Page(stream="c", cursor=str(i + 1), candidates=[
                Candidate(f"s{i}", "s.png", slow)])

    async def report(p: Progress) -> None:
        return None

    runs, other = Backfills(), Backfills()  # two bot processes sharing one catalog
    assert await runs.reserve(service, SPACE, "c")
    task = runs.start(SPACE, "c", Backfill(service, SPACE, walk, report))
    assert not await runs.reserve(service, SPACE, "c")
    assert not await other.reserve(service, SPACE, "c")  # the lease in the catalog
    lease = json.loads(await service.get_state(SPACE, "backfill-lease:c"))
    assert lease["owner"] == runs.owner
    assert runs.cancel(SPACE, "c")
    gate.set()
    result = await asyncio.wait_for(task, 30)
    assert result.cancelled and not result.finished
    assert await service.get_state(SPACE, "backfill:c") is None  # page 1 was cut short
    assert await service.get_state(SPACE, "backfill-lease:c") is None
    assert runs.running(SPACE, "c") is None and await other.reserve(service, SPACE, "c")
    await other.release(SPACE, "c")
