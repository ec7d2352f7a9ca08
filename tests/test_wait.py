"""GET /api/v1/messages/wait over real sockets: it answers when the mail lands (woken by the
commit, not a timer), 408 after its timeout, and is not taken for /messages/{id}."""

from __future__ import annotations

import asyncio

from mailflow.runtime.lab import Lab
from tests.conftest import LabFactory
from tests.helpers import api, hold_move, send

ALICE = "alice@contoso.test"
WAIT = "/api/v1/messages/wait"


async def test_the_wait_answers_once_parked_mail_is_delivered_and_not_before(lab: Lab) -> None:
    move = await hold_move(lab, ALICE, "EX2003-B")
    await lab.advance(3600)
    order: list[str] = []

    async def wait() -> tuple[int, object]:
        answer = await api(lab, "GET", f"{WAIT}?mailbox={ALICE}&subject=parked&timeout=300")
        order.append("answered")
        return answer

    waiter = asyncio.ensure_future(wait())
    await send(lab, "EX2003-A", ALICE, subject="parked")
    queued = await api(lab, "GET", f"{WAIT}?mailbox={ALICE}&state=queued&timeout=0")
    assert queued[0] == 200 and queued[1][0]["subject"] == "parked"
    await lab.settle()
    assert not waiter.done()  # parked in deferred: not delivered yet
    order.append("released")
    assert (await api(lab, "POST", f"/api/v1/moves/{move}/fail"))[0] == 200
    status, rows = await waiter
    assert order == ["released", "answered"]
    assert status == 200 and [r["subject"] for r in rows] == ["parked"]
    assert rows[0]["recipients"][0]["state"] == "delivered"


async def test_the_wait_for_several_messages_answers_when_the_last_lands(lab: Lab) -> None:
    waiter = asyncio.ensure_future(api(lab, "GET", f"{WAIT}?mailbox={ALICE}&count=2"
                                                   "&from=tester&timeout=300"))
    await send(lab, "EX2003-A", ALICE, subject="one")
    await send(lab, "EX2003-A", ALICE, subject="two")
    status, rows = await waiter
    assert status == 200 and sorted(r["subject"] for r in rows) == ["one", "two"]


async def test_the_wait_is_408_after_its_timeout(lab: Lab) -> None:
    status, doc = await api(lab, "GET", f"{WAIT}?mailbox={ALICE}&timeout=0.2")
    assert status == 408 and doc["error"] == "timed out waiting for messages"
    status, doc = await api(lab, "GET", f"{WAIT}?mailbox=nobody@contoso.test&timeout=0")
    assert status == 408


async def test_bad_wait_queries_are_400_not_a_queue_id(lab: Lab) -> None:
    for query in ("count=0", "count=abc", "timeout=301", "timeout=-1", "state=lost"):
        status, doc = await api(lab, "GET", f"{WAIT}?{query}")
        assert status == 400, (query, doc)


async def test_a_lab_that_stops_answers_its_waiters_503_at_once(lab_factory: LabFactory) -> None:
    lab = await lab_factory.start()
    waiter = asyncio.ensure_future(api(lab, "GET", f"{WAIT}?mailbox={ALICE}&timeout=300"))
    while not lab.changes.waiting:  # the request is in: its handler waits for a commit
        await asyncio.sleep(0)
    await lab_factory.stop(lab)
    status, doc = await waiter
    assert status == 503 and doc["error"] == "the lab is stopping"
