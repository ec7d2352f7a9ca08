"""2007/2010 transport: the mailbox delivery queue of a database, its retries and views."""

from __future__ import annotations

import pytest

from mailflow.runtime.lab import Lab
from routing.deferred import hub_retry_interval
from stores.topology import Defaults
from tests.helpers import api, mailbox, queue_id, queue_row, send
from tests.test_moves import run_until, start

FRANK = "frank@contoso.test"
QUEUE = "mapi:EX2010-A-DB01"


def test_retry_schedule_is_six_times_five_minutes_then_fifteen() -> None:
    waits = [hub_retry_interval(Defaults(), attempt) for attempt in range(1, 10)]
    assert waits == [300.0] * 6 + [900.0] * 3
    assert hub_retry_interval(Defaults(transient_failure_retry_count=0), 1) == 900.0


async def _frank_locked(lab: Lab) -> str:
    """An offline push that waits at AutoSuspended: frank@ stays in transit on EX2010-A."""
    move = await start(lab, FRANK, "EX2007-A", suspend_when_ready=True)
    await run_until(lab, move["id"], "AutoSuspended")
    assert (await mailbox(lab, FRANK))["in_transit"]
    return str(move["id"])


@pytest.mark.lab(scenario="exchange-2010")
async def test_in_transit_mail_waits_in_the_delivery_queue_with_hub_retries(lab: Lab) -> None:
    move_id = await _frank_locked(lab)
    reply = await send(lab, "EX2010-A", FRANK, subject="parked")
    await lab.settle()
    row = await queue_row(lab, "EX2010-A", QUEUE)
    assert (row["message_count"], row["status"]) == (1, "Retry")
    assert "STOREDRV.Deliver" in row["last_error"]
    assert (row["identity"], row["delivery_type"], row["next_hop_domain"]) == (
        "EX2010-A\\1", "MapiDelivery", "EX2010-A-DB01")
    waits = []
    for _ in range(8):
        now = lab.clock.now()
        row = await queue_row(lab, "EX2010-A", QUEUE)
        waits.append(round(row["next_retry_time"] - now))
        await lab.advance(row["next_retry_time"] - now)
    assert waits == [300] * 6 + [900] * 2
    row = await queue_row(lab, "EX2010-A", QUEUE)
    assert row["retry_count"] == 8 and row["first_retry_time"] < row["last_retry_time"]
    await _suspend_and_resume(lab)
    assert (await queue_row(lab, "EX2010-A", "deferred"))["message_count"] == 0

    status, _ = await api(lab, "POST", f"/api/v1/moves/{move_id}/resume")
    assert status == 200
    await run_until(lab, move_id, "Completed")
    await lab.settle()
    assert (await queue_row(lab, "EX2010-A", QUEUE))["message_count"] == 0
    _, doc = await api(lab, "GET", f"/api/v1/messages/{queue_id(reply)}")
    stages = [(t["stage"], t["detail"]) for t in doc["trace"]]
    assert ("rerouted", "DeferReason: Rerouted By Store Driver") in stages, stages
    assert stages[-1][0] == "delivered" and doc["trace"][-1]["server"] == "EX2007-A"


@pytest.mark.lab(scenario="mixed-2003")
async def test_2003_still_parks_in_deferred(lab: Lab) -> None:
    _, rows = await api(lab, "GET", "/api/v1/queues")
    assert {r["queue"] for r in rows if r["server"] == "EX2003-A"} >= {"local", "deferred"}
    assert not any(r["queue"].startswith("mapi:") for r in rows)


async def _suspend_and_resume(lab: Lab) -> None:
    """Get-Queue's words on a 2010 server; Get-Message's fields for its messages."""
    path = f"/api/v1/queues/EX2010-A/{QUEUE}"
    status, doc = await api(lab, "POST", f"{path}/suspend")
    assert status == 200, doc
    assert (await queue_row(lab, "EX2010-A", QUEUE))["status"] == "Suspended"
    _, messages = await api(lab, "GET", f"{path}/messages")
    (message,) = messages
    assert (message["status"], message["retry_count"]) == ("Suspended", 8)
    assert message["expiration_time"] == message["date_received"] + 2 * 86400
    assert message["internet_message_id"] == "<parked@example.net>"
    status, doc = await api(lab, "POST", f"{path}/resume")
    assert status == 200, doc
    _, (message,) = await api(lab, "GET", f"{path}/messages")
    assert message["status"] == "Retry"


@pytest.mark.lab(scenario="mixed-2003")
async def test_suspend_is_not_a_2003_word(lab: Lab) -> None:
    status, doc = await api(lab, "POST", "/api/v1/queues/EX2003-A/deferred/suspend")
    assert status == 400 and "use freeze" in doc["error"], doc
