"""``GET /live``: a ``change`` event on connecting when the page is behind, then one after a
commit that changed what a page shows, none for the scheduler's empty ticks; the lab's stop
ends the stream."""

from __future__ import annotations

import aiohttp

from mailflow.actions import queues as queue_ops
from mailflow.runtime.lab import Lab
from stores.revision import revision
from tests.conftest import LabFactory

# A safety net, not a measurement: a stream that says nothing fails the test in a minute.
LIMIT = aiohttp.ClientTimeout(sock_read=60)


async def next_event(response: aiohttp.ClientResponse) -> tuple[str, int]:
    """The next event's name and data (comments and retry lines skipped)."""
    name, data = "", ""
    while line := (await response.content.readline()).decode():
        if line == "\n" and name:
            return name, int(data)
        if line.startswith("event: "):
            name = line[7:].strip()
        elif line.startswith("data: "):
            data = line[6:].strip()
    raise AssertionError("the stream ended")


async def test_a_page_read_before_a_change_is_told_on_connecting(lab: Lab) -> None:
    async with aiohttp.ClientSession(timeout=LIMIT) as session, session.get(
            f"{lab.http_url}/live?since=stale") as response:
        assert response.content_type == "text/event-stream"
        assert (await next_event(response))[0] == "change"


async def test_only_a_visible_change_is_sent(lab: Lab) -> None:
    since = ".".join(str(n) for n in await lab.store.read(revision))
    async with aiohttp.ClientSession(timeout=LIMIT) as session, session.get(
            f"{lab.http_url}/live?since={since}") as response:
        before = lab.changes.generation
        await lab.changes.wait(before, 30)
        await lab.settle()  # commits that change nothing a page shows
        assert lab.changes.generation > before
        idle = lab.changes.generation
        await lab.store.write(
            lambda tx: queue_ops.freeze_queue(tx, lab.scenario, "EX2003-A", "deferred"))
        name, generation = await next_event(response)
        assert name == "change" and generation > idle


async def test_stopping_the_lab_ends_the_stream(lab_factory: LabFactory) -> None:
    lab = await lab_factory.start()
    async with aiohttp.ClientSession(timeout=LIMIT) as session, session.get(
            f"{lab.http_url}/live") as response:
        await next_event(response)
        await lab_factory.stop(lab)
        assert await response.content.read() == b""
