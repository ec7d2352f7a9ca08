"""The README walkthrough, over real sockets: deliver, relay, defer during a move, release."""

from __future__ import annotations

from mailflow.runtime.lab import Lab
from tests.helpers import api, queue_depth, queue_id, sample, scrape, send


async def test_walkthrough(lab: Lab) -> None:
    first = queue_id(await send(lab, "EX2003-A", "alice@contoso.test", subject="before"))
    relayed = queue_id(await send(lab, "EX2003-A", "carol@contoso.test", subject="to carol"))
    await lab.settle()

    _, carol = await api(lab, "GET", "/api/v1/mailboxes/carol@contoso.test")
    assert (carol["server"], carol["message_count"]) == ("EX2003-B", 1)
    _, trace = await api(lab, "GET", f"/api/v1/messages/{relayed}")
    stages = [(t["server"], t["stage"]) for t in trace["trace"]]
    assert ("EX2003-A", "relayed") in stages and ("EX2003-B", "delivered") in stages
    _, raw = await api(lab, "GET", f"/api/v1/messages/{relayed}/raw")
    assert raw.count("Received: from") == 2  # one per hop

    status, move = await api(lab, "POST", "/api/v1/moves",
                             {"mailbox": "alice@contoso.test", "target": "EX2003-B", "hold": True})
    assert status == 201 and move["status"] == "InProgress"
    _, alice = await api(lab, "GET", "/api/v1/mailboxes/alice@contoso.test")
    assert alice["in_transit"] and {s["server"] for s in alice["stores"]} == {"EX2003-A",
                                                                            "EX2003-B"}

    for n in range(3):
        reply = await send(lab, "EX2003-A", "alice@contoso.test", subject=f"during {n}")
        assert reply.startswith("2.6.0")
    await lab.settle()
    assert await queue_depth(lab, "EX2003-A", "deferred") == 3
    _, rows = await api(lab, "GET", "/api/v1/queues")
    deferred = next(r for r in rows if r["server"] == "EX2003-A" and r["queue"] == "deferred")
    assert deferred["identity"] == "EX2003-A\\Messages queued for deferred delivery"
    assert "ecMailboxInTransit (0x50C)" in deferred["last_error"]
    metrics = await scrape(lab)
    assert sample(metrics, "mailflow_queue_messages", server="EX2003-A", queue="deferred") == 3
    assert sample(metrics, "mailflow_mailboxes_in_transit", server="EX2003-A") == 1
    assert sample(metrics, "mailflow_store_delivery_failures_total", server="EX2003-A",
                  error="ecMailboxInTransit") == 3

    # Still in transit after an hour: the 30-minute retries are refused again.
    await lab.advance(3600)
    assert await queue_depth(lab, "EX2003-A", "deferred") == 3

    status, done = await api(lab, "POST", f"/api/v1/moves/{move['id']}/complete")
    assert status == 200 and done["status"] == "Completed"
    await lab.settle()

    _, alice = await api(lab, "GET", "/api/v1/mailboxes/alice@contoso.test")
    assert alice["server"] == "EX2003-B" and alice["message_count"] == 4
    assert not alice["in_transit"]
    assert "CN=EX2003-B" in alice["home_mdb"] and alice["home_server_name"].endswith("EX2003-B")
    assert await queue_depth(lab, "EX2003-A", "deferred") == 0
    _, first_trace = await api(lab, "GET", f"/api/v1/messages/{first}")
    assert first_trace["recipients"][0]["state"] == "delivered"

    metrics = await scrape(lab)
    assert sample(metrics, "mailflow_queue_messages", server="EX2003-A", queue="deferred") == 0
    assert sample(metrics, "mailflow_messages_released_total", server="EX2003-A",
                  queue="deferred") == 3
    assert sample(metrics, "mailflow_deferral_seconds_count", server="EX2003-B") == 3

    _, report = await api(lab, "GET", "/api/v1/audit")
    assert report["clean"], report["problems"]
    assert (report["accepted"], report["delivered"]) == (5, 5)
