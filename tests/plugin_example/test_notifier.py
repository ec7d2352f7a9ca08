"""An application's tests against a mailflow lab: only the plugin's mailflow_lab fixture."""

from __future__ import annotations

from typing import Any

import notifier

ALICE = "alice@contoso.test"


def test_a_welcome_sent_during_a_move_is_delivered_when_the_move_completes(
        mailflow_lab: Any) -> None:
    lab = mailflow_lab("mixed-2003")
    move = lab.start_move(ALICE, "EX2003-B", hold=True)
    lab.advance(3600)  # the move copies; alice's mailbox is in transit
    host, port = lab.smtp_address("EX2003-A")

    assert notifier.send_welcome(host, port, ALICE)

    # Accepted, but parked: Exchange defers mail for a mailbox being moved.
    [queued] = lab.wait(ALICE, subject="Welcome", state="queued")
    assert queued["recipients"][0]["state"] != "delivered"
    assert lab.queue_depth("EX2003-A", "deferred") == 1

    lab.complete_move(move["id"])
    [delivered] = lab.wait(ALICE, subject="Welcome")
    assert delivered["recipients"][0]["server"] == "EX2003-B"
    assert lab.audit()["clean"]


def test_the_app_reports_a_temporary_refusal_and_succeeds_on_retry(mailflow_lab: Any) -> None:
    lab = mailflow_lab()
    lab.add_fault(stage="rcpt", recipient="^alice@", action="reply", code=451, count=1)
    host, port = lab.smtp_address()

    assert not notifier.send_welcome(host, port, ALICE)  # the next one only: 451
    assert notifier.send_welcome(host, port, ALICE)
    assert len(lab.wait(ALICE)) == 1


def test_each_test_has_a_lab_of_its_own(mailflow_lab: Any) -> None:
    lab = mailflow_lab()
    queue_id = lab.send(ALICE, subject="mine")
    [message] = lab.wait(ALICE)
    assert message["id"] == queue_id and message["subject"] == "mine"
