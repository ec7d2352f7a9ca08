"""Releases of parked mail go in pages, one transaction each, and survive a restart."""

from __future__ import annotations

import aiosmtplib
import pytest

from mailflow.runtime.lab import Lab
from routing import deferred
from stores import backends
from stores import mailbox as stores_mailbox
from stores.clock import Clock
from tests.conftest import LabFactory
from tests.helpers import api, hold_move, mailbox, queue_depth

ALICE = "alice@contoso.test"
PARKED = 23  # three pages of 7 and a short one


async def park(lab: Lab, count: int) -> None:
    """Send ``count`` messages to alice on EX2003-A in one SMTP session."""
    host, port = lab.endpoint_address("EX2003-A")
    async with aiosmtplib.SMTP(hostname=host, port=port, start_tls=False) as smtp:
        for n in range(count):
            await smtp.sendmail("tester@example.net", [ALICE],
                                f"Subject: parked {n}\r\n\r\nHello.\r\n".encode())
    await lab.settle()


async def all_released(lab: Lab, before: int) -> None:
    """Every parked message is in alice's mailbox, nothing is left to release, audit clean."""
    assert (await mailbox(lab, ALICE))["message_count"] == before + PARKED
    assert await queue_depth(lab, "EX2003-A", "deferred") == 0
    left = await lab.store.read(lambda c: c.execute("SELECT COUNT(*) FROM releases").fetchone())
    assert left[0] == 0
    _, report = await api(lab, "GET", "/api/v1/audit")
    assert report["clean"], report


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deferred, "RELEASE_PAGE", 7)


@pytest.mark.usefixtures("small_pages")
async def test_a_failed_move_releases_page_by_page(lab: Lab) -> None:
    before = (await mailbox(lab, ALICE))["message_count"]
    move = await hold_move(lab, ALICE, "EX2003-B")
    await lab.advance(3600)
    await park(lab, PARKED)
    assert await queue_depth(lab, "EX2003-A", "deferred") == PARKED

    status, failed = await api(lab, "POST", f"/api/v1/moves/{move}/fail")
    assert status == 200 and failed["status"] == "Failed"
    await lab.settle()
    await all_released(lab, before)


@pytest.mark.usefixtures("small_pages")
async def test_a_release_cut_short_by_a_restart_goes_on(lab_factory: LabFactory) -> None:
    lab = await lab_factory.start()
    before = (await mailbox(lab, ALICE))["message_count"]
    await hold_move(lab, ALICE, "EX2003-B")
    await lab.advance(3600)
    await park(lab, PARKED)
    await lab_factory.stop(lab)

    # As if the lab died right after the write that cleared PR_IN_TRANSIT: the flag is
    # clear, the release is recorded (as deferred.release records it) and not one page of
    # it has gone.
    store = backends.open_store(lab.store_location, Clock(speed=0))
    store.write_sync(lambda tx: (
        stores_mailbox.set_in_transit(tx, "EX2003-A", ALICE, False),
        tx.execute("INSERT INTO releases(mailbox, queue, after_id) VALUES (?, ?, 0)",
                        (ALICE, deferred.QUEUE))))
    store.close()

    lab = await lab_factory.start()
    await lab.settle()
    await all_released(lab, before)
