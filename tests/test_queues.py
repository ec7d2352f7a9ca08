"""Queue Viewer actions over the API, on real SMTP and the lab clock: delete with and without
NDR, freeze and thaw (message and queue), Find Messages, Disable Outbound Mail, tracking."""

from __future__ import annotations

from mailflow.runtime.lab import Lab
from routing.queues import shown_status
from stores.queue_state import QueueStatus, Stats
from tests.helpers import (
    api,
    events,
    hold_move,
    mailbox,
    queue_depth,
    queue_id,
    queue_row,
    send,
)

ALICE, BOB, CAROL, DAVE = (f"{n}@contoso.test" for n in ("alice", "bob", "carol", "dave"))
DEFERRED = "/api/v1/queues/EX2003-A/deferred"


async def queued(lab: Lab, path: str, query: str = "") -> list[dict[str, object]]:
    status, rows = await api(lab, "GET", f"{path}/messages{query}")
    assert status == 200, rows
    return list(rows)


async def test_delete_with_and_without_ndr(lab: Lab) -> None:
    """Acceptance 2."""
    await hold_move(lab, ALICE, "EX2003-B")
    loud = queue_id(await send(lab, "EX2003-A", ALICE, sender=BOB, subject="loud"))
    quiet = queue_id(await send(lab, "EX2003-A", ALICE, sender=BOB, subject="quiet"))
    await lab.settle()

    status, doc = await api(lab, "DELETE", f"{DEFERRED}/messages/{loud}?ndr=true")
    assert status == 200 and (doc["ndr"], doc["deleted"]) == (True, [ALICE])
    status, doc = await api(lab, "DELETE", f"{DEFERRED}/messages/{quiet}?ndr=false")
    assert status == 200 and doc["ndr"] is False
    await lab.settle()

    assert await queue_depth(lab, "EX2003-A", "deferred") == 0
    _, items = await api(lab, "GET", f"/api/v1/mailboxes/{BOB}/messages")
    assert [i["subject"] for i in items] == ["Undeliverable: loud"]
    _, raw = await api(lab, "GET", f"/api/v1/messages/{items[0]['id']}/raw")
    assert "Status: 4.3.2" in raw and "QUEUE.Admin" in raw
    _, report = await api(lab, "GET", "/api/v1/audit")
    assert report["clean"] and report["deleted"] == 2 and report["delivered"] == 1
    for message, stage in ((loud, "deleted"), (quiet, "deleted")):
        _, doc = await api(lab, "GET", f"/api/v1/messages/{message}")
        assert doc["recipients"][0]["state"] == "deleted"
        assert any(t["stage"] == stage for t in doc["trace"])
    assert [len(await events(lab, n)) for n in (1025, 1026)] == [1, 1]

    status, doc = await api(lab, "DELETE", f"{DEFERRED}/messages/{loud}")
    assert status == 404 and "error" in doc
    status, doc = await api(lab, "DELETE", f"{DEFERRED}/messages/{loud}?ndr=maybe")
    assert status == 400
    status, _ = await api(lab, "DELETE", f"{DEFERRED}/messages/{loud}?ndr=true", token=None)
    assert status == 401


async def test_a_frozen_message_stays_through_a_release_until_thawed(lab: Lab) -> None:
    """Acceptance 3."""
    move = await hold_move(lab, ALICE, "EX2003-B")
    await send(lab, "EX2003-A", ALICE, subject="frozen one")  # Message-ID <frozen.one@...>
    await send(lab, "EX2003-A", ALICE, subject="free one")
    await lab.settle()
    status, doc = await api(lab, "POST",
                            f"{DEFERRED}/messages/%3Cfrozen.one@example.net%3E/freeze")
    assert status == 200 and doc["frozen"] is True
    rows = await queued(lab, DEFERRED)
    assert [(r["subject"], r["frozen"]) for r in rows] == [("frozen one", True),
                                                          ("free one", False)]

    await api(lab, "POST", f"/api/v1/moves/{move}/complete")
    await lab.advance(3 * lab.scenario.defaults.deferred_retry_seconds)
    assert (await mailbox(lab, ALICE))["message_count"] == 1
    assert [r["subject"] for r in await queued(lab, DEFERRED)] == ["frozen one"]

    status, doc = await api(lab, "POST", f"{DEFERRED}/messages/{rows[0]['id']}/thaw")
    assert status == 200 and doc["frozen"] is False
    alice = await mailbox(lab, ALICE)
    assert (alice["server"], alice["message_count"]) == ("EX2003-B", 2)
    assert await queue_depth(lab, "EX2003-A", "deferred") == 0
    status, _ = await api(lab, "POST", f"{DEFERRED}/messages/{rows[0]['id']}/thaw")
    assert status == 404  # it has left the queue
    assert [len(await events(lab, n)) for n in (1023, 1024)] == [1, 1]


async def test_a_frozen_queue_holds_everything_until_thawed(lab: Lab) -> None:
    move = await hold_move(lab, ALICE, "EX2003-B")
    for n in range(2):
        await send(lab, "EX2003-A", ALICE, subject=f"queued {n}")
    await lab.settle()
    status, doc = await api(lab, "POST", f"{DEFERRED}/freeze")
    assert status == 200 and doc["status"] == "Frozen"
    assert (await api(lab, "POST", f"{DEFERRED}/freeze"))[0] == 409
    assert (await api(lab, "POST", f"{DEFERRED}/retry"))[0] == 409
    assert (await queue_row(lab, "EX2003-A", "deferred"))["status"] == "Frozen"

    await api(lab, "POST", f"/api/v1/moves/{move}/complete")
    await lab.advance(lab.scenario.defaults.deferred_retry_seconds)
    assert await queue_depth(lab, "EX2003-A", "deferred") == 2

    status, doc = await api(lab, "POST", f"{DEFERRED}/thaw")
    assert status == 200 and doc["status"] == "Ready"
    assert await queue_depth(lab, "EX2003-A", "deferred") == 0
    assert (await mailbox(lab, ALICE))["message_count"] == 2
    status, doc = await api(lab, "POST", f"{DEFERRED}/thaw")
    assert status == 409 and "not frozen" in doc["error"]
    assert [len(await events(lab, n)) for n in (1021, 1022)] == [1, 1]
    assert (await api(lab, "POST", "/api/v1/queues/EX2003-A/nosuch/freeze"))[0] == 404


async def test_a_frozen_intransitfolder_message_is_flushed_when_thawed(lab: Lab) -> None:
    move = await hold_move(lab, DAVE, "EX2000-LON")
    message = queue_id(await send(lab, "EX55-LON", DAVE))
    await lab.settle()
    holding = "/api/v1/queues/EX55-LON/holding"
    assert (await api(lab, "POST", f"{holding}/messages/{message}/freeze"))[0] == 200
    await api(lab, "POST", f"/api/v1/moves/{move}/complete")
    await lab.advance(3600)
    assert await queue_depth(lab, "EX55-LON", "holding") == 1
    assert (await api(lab, "POST", f"{holding}/messages/{message}/thaw"))[0] == 200
    dave = await mailbox(lab, DAVE)
    assert (dave["server"], dave["message_count"]) == ("EX2000-LON", 1)


async def test_find_messages_filters(lab: Lab) -> None:
    await hold_move(lab, ALICE, "EX2003-B")
    await hold_move(lab, BOB, "EX2003-B")
    await send(lab, "EX2003-A", [ALICE, BOB], sender="old@example.net", subject="old")
    await lab.advance(20 * 60)
    await send(lab, "EX2003-A", ALICE, sender="new@example.org", subject="new")
    await lab.settle()

    everything = await queued(lab, DEFERRED)
    assert [(r["subject"], r["recipients"]) for r in everything] == [
        ("old", [ALICE, BOB]), ("new", [ALICE])]
    first = everything[0]
    assert {"id", "message_id", "sender", "recipients", "subject", "size", "arrival_time",
            "attempts", "next_attempt", "last_error", "frozen"} <= set(first)
    assert first["message_id"] == "<old@example.net>" and "ecMailboxInTransit" in str(
        first["last_error"])
    by_sender = await queued(lab, DEFERRED, "?sender=EXAMPLE.ORG")
    assert [r["subject"] for r in by_sender] == ["new"]
    by_rcpt = await queued(lab, DEFERRED, "?recipient=bob@")
    assert [(r["subject"], r["recipients"]) for r in by_rcpt] == [("old", [ALICE, BOB])]
    older = await queued(lab, DEFERRED, "?older_than=600")
    assert [r["subject"] for r in older] == ["old"]
    status, _ = await api(lab, "GET", f"{DEFERRED}/messages?older_than=soon")
    assert status == 400


async def test_disable_outbound_holds_the_link_queues(lab: Lab) -> None:
    status, doc = await api(lab, "POST", "/api/v1/servers/EX2003-A/disable-outbound")
    assert status == 200 and doc["outbound"] == "disabled"
    assert (await api(lab, "POST", "/api/v1/servers/EX2003-A/disable-outbound"))[0] == 409
    await send(lab, "EX2003-A", CAROL)
    await send(lab, "EX2003-A", ALICE)  # local delivery goes on
    await lab.advance(3 * lab.scenario.defaults.link_retry_seconds)
    link = await queue_row(lab, "EX2003-A", "smtp:EX2003-B")
    assert link["message_count"] == 1 and "Outbound mail is disabled" in link["last_error"]
    assert (await mailbox(lab, ALICE))["message_count"] == 1

    status, doc = await api(lab, "POST", "/api/v1/servers/EX2003-A/enable-outbound")
    assert status == 200 and doc["outbound"] == "enabled"
    await lab.settle()
    assert await queue_depth(lab, "EX2003-A", "smtp:EX2003-B") == 0
    assert (await mailbox(lab, CAROL))["message_count"] == 1
    assert [len(await events(lab, n)) for n in (1027, 1028)] == [1, 1]
    assert (await api(lab, "POST", "/api/v1/servers/NOPE/disable-outbound"))[0] == 404


async def test_trace_of_a_deferred_then_released_message(lab: Lab) -> None:
    """Acceptance 5, by Message-ID header as well as by queue id."""
    move = await hold_move(lab, ALICE, "EX2003-B")
    message = queue_id(await send(lab, "EX2003-A", ALICE, subject="traced"))
    await lab.advance(lab.scenario.defaults.deferred_retry_seconds)
    await api(lab, "POST", f"/api/v1/moves/{move}/complete")
    await lab.settle()

    status, doc = await api(lab, "GET", "/api/v1/messages/%3Ctraced@example.net%3E")
    assert status == 200 and doc["id"] == message
    trace = [(t["server"], t["stage"], t["detail"]) for t in doc["trace"]]
    stages = [stage for _, stage, _ in trace]
    assert stages[:2] == ["accepted", "categorized"]
    assert "client client.example.net [127.0.0.1]" in trace[0][2]
    refusals = [d for _, s, d in trace if s == "refused"]
    assert refusals == ["ecMailboxInTransit (0x50C)"] * 2  # the first try and one retry
    assert [d for _, s, d in trace if s == "deferred"][1].startswith("queue deferred, attempt 2")
    released = stages.index("released")
    assert stages.index("refused") < released < stages.index("delivered")
    assert ("EX2003-A", "relayed", "to EX2003-B over SMTP") in trace
    assert trace[-1] == ("EX2003-B", "delivered", f"mailbox {ALICE}, folder Inbox")
    assert all(t["sim_time"] and t["real_time"] for t in doc["trace"])
    assert (await api(lab, "GET", f"/api/v1/messages/{message}"))[1]["trace"] == doc["trace"]

    status, found = await api(lab, "GET", "/api/v1/messages?search=TRACED")
    assert status == 200 and [m["id"] for m in found] == [message]
    _, by_rcpt = await api(lab, "GET", f"/api/v1/messages?recipient={ALICE}&subject=trac")
    assert [m["id"] for m in by_rcpt] == [message]
    assert by_rcpt[0]["recipients"][0]["state"] == "delivered"
    _, none = await api(lab, "GET", "/api/v1/messages?search=nothing-like-it")
    assert none == []


async def test_retry_of_unreachable_routes_it_again(lab: Lab) -> None:
    await hold_move(lab, ALICE, "EX2003-B")
    message = queue_id(await send(lab, "EX2003-A", ALICE))
    await lab.settle()
    await api(lab, "DELETE", f"{DEFERRED}/messages/{message}?ndr=true")
    assert await queue_depth(lab, "EX2003-A", "unreachable") == 1  # the NDR to tester@
    status, doc = await api(lab, "POST", "/api/v1/queues/EX2003-A/unreachable/retry")
    assert status == 200 and doc["retried"] == 1
    assert await queue_depth(lab, "EX2003-A", "unreachable") == 1  # still no smarthost
    assert len(await events(lab, 1020)) == 1


def test_a_draining_link_queue_is_active() -> None:
    """Issue 16, item 12: Queue Viewer shows Active while a connection drains a queue. Due,
    unfrozen mail in a Ready link, smarthost or MTA queue is that; not-yet-due mail,
    a queue held by Disable Outbound Mail and local queues stay as they were."""
    due = Stats(depth=300, oldest_at=0.0, next_attempt=10.0, last_error=None)
    later = due._replace(next_attempt=99.0)
    frozen = due._replace(next_attempt=None)
    for queue in ("smtp:EX2003-B", "smarthost", "mta:EX2003-B", "mta:x400:LON-RED X.400"):
        assert shown_status("EX2003-A", queue, due, None, 10.0, outbound_off=False,
                            in_transit=False)[0] == QueueStatus.ACTIVE
    assert shown_status("EX2003-A", "smtp:EX2003-B", later, None, 10.0, outbound_off=False,
                        in_transit=False)[0] == QueueStatus.READY
    assert shown_status("EX2003-A", "smtp:EX2003-B", frozen, None, 10.0, outbound_off=False,
                        in_transit=False)[0] == QueueStatus.READY
    assert shown_status("EX2003-A", "smtp:EX2003-B", due, None, 10.0, outbound_off=True,
                        in_transit=False) == (QueueStatus.READY, None,
                                              "Outbound mail is disabled on EX2003-A")
    assert shown_status("EX2003-A", "local", due, None, 10.0, outbound_off=False,
                        in_transit=False)[0] == QueueStatus.READY
