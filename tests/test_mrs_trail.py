"""The trail of an MRS request: msExchMailboxMove*, the System Mailbox, the MRS instance."""

from __future__ import annotations

import dataclasses

import pytest

from mailflow.moves.mrs_service import instances, pick_instance
from mailflow.runtime.lab import Lab
from mailflow.scenarios import load
from tests.helpers import api, mailbox
from tests.test_moves import run_until, start

FRANK = "frank@contoso.test"
SYSTEM = "/api/v1/databases/EX2010-B-DB01/system-mailbox"


async def folders(lab: Lab) -> dict[str, list[str]]:
    status, doc = await api(lab, "GET", SYSTEM)
    assert status == 200, doc
    return {f["name"].removeprefix("MailboxReplicationService "): [m["move"] for m in
                                                                   f["messages"]]
            for f in doc["folders"]}


@pytest.mark.lab(scenario="exchange-2010")
async def test_attributes_and_request_message_stay_until_remove(lab: Lab) -> None:
    assert "msExchMailboxMoveStatus" not in await mailbox(lab, FRANK)
    move = await start(lab, FRANK, "EX2010-B", batch="wave1")
    state = await mailbox(lab, FRANK)
    assert state["msExchMailboxMoveStatus"] == "InProgress"
    assert state["msExchMailboxMoveTargetMDBLink"].startswith("CN=EX2010-B-DB01,")
    assert state["msExchMailboxMoveSourceMDBLink"].startswith("CN=EX2010-A-DB01,")
    assert (state["msExchMailboxMoveBatchName"], state["move_request"]) == ("wave1", move["id"])
    assert (await folders(lab))["Move Jobs"] == [move["id"]]

    await run_until(lab, move["id"], "Completed")
    state = await mailbox(lab, FRANK)
    assert state["msExchMailboxMoveStatus"] == "Completed"
    shown = await folders(lab)
    assert (shown["Move Jobs"], shown["Move Reports"]) == ([], [move["id"]])
    status, doc = await api(lab, "POST", "/api/v1/moves",
                            {"mailbox": FRANK, "target": "EX2010-A"})
    assert status == 409 and "remove it first" in doc["error"], doc

    status, _ = await api(lab, "DELETE", f"/api/v1/moves/{move['id']}")
    assert status == 200
    assert "msExchMailboxMoveStatus" not in await mailbox(lab, FRANK)
    status, doc = await api(lab, "GET", SYSTEM)
    assert all(f["messages"] == [] for f in doc["folders"])
    await start(lab, FRANK, "EX2010-A")


@pytest.mark.lab(scenario="exchange-2010")
async def test_unknown_or_legacy_database_is_404(lab: Lab) -> None:
    for name in ("NOPE", "EX2003-A-DB01"):
        status, doc = await api(lab, "GET", f"/api/v1/databases/{name}/system-mailbox")
        assert status == 404, doc


def test_mrs_instance_is_random_among_the_site_cas_and_reproducible() -> None:
    base = load("exchange-2010")
    everyone = dataclasses.replace(base, servers=tuple(
        dataclasses.replace(s, roles=()) for s in base.servers))
    assert instances(everyone, "EX2007-A") == ["EX2010-A", "EX2010-B"]
    picks = {pick_instance(everyone, f"user{i}@contoso.test", "EX2007-A", 0.0) for i in range(20)}
    assert picks == {"EX2010-A", "EX2010-B"}
    again = [pick_instance(everyone, FRANK, "EX2007-A", 5.0) for _ in range(3)]
    assert len(set(again)) == 1
    assert instances(base, "EX2007-A") == ["EX2010-A"]
