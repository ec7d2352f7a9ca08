"""A failed move delivers its parked mail at the source; a restart keeps every queue and move."""

from __future__ import annotations

import pytest

from mailflow.runtime.lab import Lab
from tests.conftest import LabFactory
from tests.helpers import api, mailbox, queue_depth, send


async def test_failed_move_rolls_back_and_delivers_at_the_source(lab: Lab) -> None:
    _, move = await api(lab, "POST", "/api/v1/moves",
                        {"mailbox": "bob@contoso.test", "target": "EX2003-B", "hold": True})
    for n in range(2):
        await send(lab, "EX2003-A", "bob@contoso.test", subject=f"parked {n}")
    await lab.settle()
    assert await queue_depth(lab, "EX2003-A", "deferred") == 2

    status, failed = await api(lab, "POST", f"/api/v1/moves/{move['id']}/fail")
    assert status == 200 and failed["status"] == "Failed"
    await lab.settle()

    _, bob = await api(lab, "GET", "/api/v1/mailboxes/bob@contoso.test")
    assert (bob["server"], bob["message_count"], bob["in_transit"]) == ("EX2003-A", 2, False)
    assert [s["server"] for s in bob["stores"]] == ["EX2003-A"]
    assert await queue_depth(lab, "EX2003-A", "deferred") == 0
    _, events = await api(lab, "GET", "/api/v1/events")
    assert any(e["event_id"] == 1003 and "rolled back" in e["text"] for e in events)
    _, report = await api(lab, "GET", "/api/v1/audit")
    assert report["clean"] and report["delivered"] == 2


async def test_restart_keeps_deferred_mail_and_the_held_move(lab_factory: LabFactory) -> None:
    first = await lab_factory.start()
    _, move = await api(first, "POST", "/api/v1/moves",
                        {"mailbox": "alice@contoso.test", "target": "EX2003-B", "hold": True})
    for n in range(3):
        await send(first, "EX2003-A", "alice@contoso.test", subject=f"before restart {n}")
    await first.advance(first.scenario.defaults.move_base_seconds)  # the copy ends: Held
    assert await queue_depth(first, "EX2003-A", "deferred") == 3
    await lab_factory.stop(first)

    second = await lab_factory.start()
    assert await queue_depth(second, "EX2003-A", "deferred") == 3
    _, held = await api(second, "GET", f"/api/v1/moves/{move['id']}")
    assert (held["status"], held["status_detail"]) == ("InProgress", "Held")
    _, alice = await api(second, "GET", "/api/v1/mailboxes/alice@contoso.test")
    assert alice["in_transit"]

    await api(second, "POST", f"/api/v1/moves/{move['id']}/complete")
    await second.settle()
    _, alice = await api(second, "GET", "/api/v1/mailboxes/alice@contoso.test")
    assert (alice["server"], alice["message_count"]) == ("EX2003-B", 3)
    _, report = await api(second, "GET", "/api/v1/audit")
    assert report["clean"] and report["delivered"] == 3


async def test_restart_rolls_back_a_wizard_move_caught_mid_copy(lab_factory: LabFactory) -> None:
    first = await lab_factory.start()
    _, move = await api(first, "POST", "/api/v1/moves",
                        {"mailbox": "alice@contoso.test", "target": "EX2003-B"})
    assert move["step"] == "CopyingMessages"
    await send(first, "EX2003-A", "alice@contoso.test")
    await first.settle()
    await lab_factory.stop(first)

    second = await lab_factory.start()
    await second.settle()
    _, failed = await api(second, "GET", f"/api/v1/moves/{move['id']}")
    assert (failed["status"], failed["step"]) == ("Failed", "RolledBack")
    assert failed["failure_step"] == "CopyingMessages"
    alice = await mailbox(second, "alice@contoso.test")
    assert (alice["server"], alice["message_count"], alice["in_transit"]) == (
        "EX2003-A", 1, False)


async def test_move_without_hold_completes_on_the_lab_clock(lab: Lab) -> None:
    _, move = await api(lab, "POST", "/api/v1/moves",
                        {"mailbox": "carol@contoso.test", "target": "EX2003-A"})
    assert move["due_at"] - move["start_at"] == lab.scenario.defaults.move_base_seconds
    await send(lab, "EX2003-B", "carol@contoso.test", subject="during")
    await lab.settle()
    assert await queue_depth(lab, "EX2003-B", "deferred") == 1

    await lab.advance(lab.scenario.defaults.move_base_seconds)
    _, done = await api(lab, "GET", f"/api/v1/moves/{move['id']}")
    assert done["status"] == "Completed"
    _, carol = await api(lab, "GET", "/api/v1/mailboxes/carol@contoso.test")
    assert (carol["server"], carol["message_count"]) == ("EX2003-A", 1)


async def test_scheduled_move_waits_for_its_time(lab: Lab) -> None:
    start_at = lab.clock.now() + 1800
    _, move = await api(lab, "POST", "/api/v1/moves", {"mailbox": "alice@contoso.test",
                                                       "target": "EX2003-B", "hold": True,
                                                       "at": start_at})
    assert move["status"] == "Queued"
    await send(lab, "EX2003-A", "alice@contoso.test")
    await lab.settle()
    _, alice = await api(lab, "GET", "/api/v1/mailboxes/alice@contoso.test")
    assert alice["message_count"] == 1 and not alice["in_transit"]
    await lab.advance(1800)
    _, started = await api(lab, "GET", f"/api/v1/moves/{move['id']}")
    assert started["status"] == "InProgress"
    _, alice = await api(lab, "GET", "/api/v1/mailboxes/alice@contoso.test")
    assert alice["in_transit"]


async def test_unreachable_peer_retries_the_link_queue(lab: Lab) -> None:
    await lab.endpoints["EX2003-B"].stop()
    await send(lab, "EX2003-A", "carol@contoso.test")
    await lab.settle()
    _, rows = await api(lab, "GET", "/api/v1/queues")
    link = next(r for r in rows if r["identity"] == "EX2003-A\\EX2003-B")
    assert (link["queue"], link["message_count"], link["status"]) == ("smtp:EX2003-B", 1, "Retry")
    assert link["next_retry_time"] == lab.clock.now() + lab.scenario.defaults.link_retry_seconds

    host, _ = lab.endpoint_address("EX2003-B")
    await lab.endpoints["EX2003-B"].start(host, 0)
    await lab.advance(lab.scenario.defaults.link_retry_seconds)
    assert await queue_depth(lab, "EX2003-A", "smtp:EX2003-B") == 0
    _, carol = await api(lab, "GET", "/api/v1/mailboxes/carol@contoso.test")
    assert carol["message_count"] == 1
    _, rows = await api(lab, "GET", "/api/v1/queues")
    assert next(r for r in rows if r["identity"] == "EX2003-A\\EX2003-B")["status"] == "Ready"


@pytest.mark.lab(scenario="exchange-2010")
async def test_restart_resumes_an_mrs_move(lab_factory: LabFactory) -> None:
    first = await lab_factory.start()
    _, move = await api(first, "POST", "/api/v1/moves",
                        {"mailbox": "frank@contoso.test", "target": "EX2010-B"})
    await first.advance(first.scenario.defaults.move_base_seconds / 2)  # past InitialSeeding
    _, before = await api(first, "GET", f"/api/v1/moves/{move['id']}")
    assert (before["engine"], before["status"]) == ("mrs2010", "InProgress")
    assert before["status_detail"] != "InitialSeeding"
    await lab_factory.stop(first)

    second = await lab_factory.start()
    await second.advance(second.scenario.defaults.move_base_seconds * 2)
    _, after = await api(second, "GET", f"/api/v1/moves/{move['id']}")
    assert after["status"] == "Completed"
    details = [h["status_detail"] for h in after["history"]]
    assert details.count("InitialSeeding") == 1  # resumed, not started over
    assert (await mailbox(second, "frank@contoso.test"))["server"] == "EX2010-B"
