"""Move engines per Exchange version, over real SMTP and on the lab clock."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest

from mailflow.runtime.lab import Lab
from tests.helpers import api, mailbox, queue_depth, send

FRANK = "frank@contoso.test"


async def start(lab: Lab, address: str, target: str, **options: Any) -> dict[str, Any]:
    status, move = await api(lab, "POST", "/api/v1/moves",
                             {"mailbox": address, "target": target, **options})
    assert status == 201, move
    return dict(move)


async def show(lab: Lab, move_id: str) -> dict[str, Any]:
    status, move = await api(lab, "GET", f"/api/v1/moves/{move_id}")
    assert status == 200, move
    return dict(move)


async def run_until(lab: Lab, move_id: str, status: str, step_seconds: float = 10,
                    limit: int = 200) -> dict[str, Any]:
    """Advance the lab clock in steps until the move reaches ``status``."""
    for _ in range(limit):
        move = await show(lab, move_id)
        if move["status"] == status:
            return move
        await lab.advance(step_seconds)
    raise AssertionError(f"move {move_id} never reached {status}: {move}")


@pytest.mark.lab(scenario="exchange-2010")
async def test_mrs_online_move_with_suspend_when_ready(lab: Lab) -> None:
    before = (await mailbox(lab, FRANK))["message_count"]  # the scenario's seeded items
    move = await start(lab, FRANK, "EX2010-B", suspend_when_ready=True)
    assert (move["engine"], move["status"], move["status_detail"]) == (
        "mrs2010", "InProgress", "InitialSeeding")
    await send(lab, "EX2010-A", FRANK, subject="during seeding")
    await lab.settle()
    assert (await mailbox(lab, FRANK))["message_count"] == before + 1  # online: at once

    suspended = await run_until(lab, move["id"], "AutoSuspended")
    assert suspended["status_detail"] == "AutoSuspended"
    assert not (await mailbox(lab, FRANK))["in_transit"]
    await send(lab, "EX2010-A", FRANK, subject="while auto-suspended")
    await lab.settle()
    assert (await mailbox(lab, FRANK))["message_count"] == before + 2

    status, resumed = await api(lab, "POST", f"/api/v1/moves/{move['id']}/resume")
    assert status == 200 and resumed["status"] == "CompletionInProgress"
    assert (await mailbox(lab, FRANK))["in_transit"]
    await send(lab, "EX2010-A", FRANK, subject="during finalization")
    await lab.settle()
    assert await queue_depth(lab, "EX2010-A", "mapi:EX2010-A-DB01") == 1

    done = await run_until(lab, move["id"], "Completed")
    assert done["status_detail"] == "Completed" and done["percent_complete"] == 100
    await lab.settle()
    frank = await mailbox(lab, FRANK)
    assert (frank["server"], frank["message_count"], frank["in_transit"]) == (
        "EX2010-B", before + 3, False)
    details = [h["status_detail"] for h in done["history"]]
    assert details == ["Queued", "InitialSeeding", "CopyingMessages", "IncrementalSync",
                       "AutoSuspended", "Finalization", "Completed"]
    assert frank["attributes"]["MailboxMoveHistory"][0]["move"] == move["id"]


@pytest.mark.lab(scenario="exchange-2010")
async def test_mrs_bad_items_over_the_limit_fail_and_roll_back(lab: Lab) -> None:
    move = await start(lab, FRANK, "EX2010-B", bad_items=3, bad_item_limit=2)
    failed = await run_until(lab, move["id"], "Failed")
    assert failed["status_detail"] == "FailedBadItemLimit"
    assert failed["bad_items_encountered"] == 3
    frank = await mailbox(lab, FRANK)
    assert (frank["server"], frank["in_transit"]) == ("EX2010-A", False)
    assert [s["server"] for s in frank["stores"]] == ["EX2010-A"]


@pytest.mark.lab(scenario="exchange-2010")
async def test_mrs_transient_fault_retries_then_succeeds(lab: Lab) -> None:
    move = await start(lab, FRANK, "EX2010-B", fail_at="transient:2")
    done = await run_until(lab, move["id"], "Completed", step_seconds=5)
    details = [h["status_detail"] for h in done["history"]]
    assert details.count("TransientFailure") == 1  # recorded once per run of failures
    assert details[-1] == "Completed"
    assert (await mailbox(lab, FRANK))["server"] == "EX2010-B"


@pytest.mark.lab(scenario="exchange-2010")
async def test_mrs_gives_up_after_max_retries(lab: Lab) -> None:
    retries = lab.scenario.defaults.mrs_max_retries
    move = await start(lab, FRANK, "EX2010-B", fail_at=f"transient:{retries + 1}")
    failed = await run_until(lab, move["id"], "Failed", step_seconds=30, limit=400)
    assert "MaxRetries" in failed["failure_reason"]
    assert (await mailbox(lab, FRANK))["server"] == "EX2010-A"


@pytest.mark.lab(scenario="exchange-2010")
async def test_mrs_request_must_be_removed_before_the_next(lab: Lab) -> None:
    move = await start(lab, FRANK, "EX2010-B")
    await run_until(lab, move["id"], "Completed")
    status, refused = await api(lab, "POST", "/api/v1/moves",
                                {"mailbox": FRANK, "target": "EX2010-A"})
    assert status == 409 and "remove it first" in refused["error"]
    assert (await api(lab, "DELETE", f"/api/v1/moves/{move['id']}"))[0] == 200
    await start(lab, FRANK, "EX2010-A")


@pytest.mark.lab(scenario="exchange-2010")
async def test_mrs_target_database_limit_keeps_requests_queued(lab: Lab) -> None:
    users = ["user001@contoso.test", "user004@contoso.test", "user007@contoso.test"]
    homes = [(await mailbox(lab, u))["server"] for u in users]
    assert set(homes) == {"EX2007-A"}
    moves = [await start(lab, u, "EX2010-B") for u in users]
    statuses = [(await show(lab, m["id"]))["status"] for m in moves]
    assert statuses == ["InProgress", "InProgress", "Queued"]  # MaxActiveMovesPerTargetMDB 2
    for m in moves:
        await run_until(lab, m["id"], "Completed")


@pytest.mark.lab(scenario="exchange-2010")
async def test_mrs_suspend_and_resume(lab: Lab) -> None:
    move = await start(lab, FRANK, "EX2010-B")
    status, suspended = await api(lab, "POST", f"/api/v1/moves/{move['id']}/suspend")
    assert status == 200 and suspended["status"] == "Suspended"
    await lab.advance(3600)
    assert (await show(lab, move["id"]))["status"] == "Suspended"
    status, resumed = await api(lab, "POST", f"/api/v1/moves/{move['id']}/resume")
    assert status == 200 and resumed["status"] == "InProgress"
    await run_until(lab, move["id"], "Completed")


@pytest.mark.lab(scenario="exchange-2010")
async def test_2007_offline_move_keeps_the_mailbox_in_transit_throughout(lab: Lab) -> None:
    heidi = "heidi@contoso.test"
    before = (await mailbox(lab, heidi))["message_count"]
    move = await start(lab, heidi, "EX2010-A", engine="movemailbox2007")
    seen = []
    while (current := await show(lab, move["id"]))["status"] != "Completed":
        seen.append((await mailbox(lab, heidi))["in_transit"])
        await send(lab, "EX2007-A", heidi)
        await lab.advance(15)
    assert seen and all(seen)
    assert current["engine"] == "movemailbox2007"
    await lab.settle()
    after = await mailbox(lab, heidi)
    assert (after["server"], after["message_count"]) == ("EX2010-A", before + len(seen))


async def test_2003_wizard_rolls_back_at_the_directory_update(lab: Lab) -> None:
    move = await start(lab, "alice@contoso.test", "EX2003-B", hold=True,
                       fail_at="directory-update")
    assert move["engine"] == "wizard2003"
    for n in range(2):
        await send(lab, "EX2003-A", "alice@contoso.test", subject=f"parked {n}")
    await lab.advance(lab.scenario.defaults.move_base_seconds)
    assert (await show(lab, move["id"]))["status_detail"] == "Held"
    assert await queue_depth(lab, "EX2003-A", "deferred") == 2
    status, failed = await api(lab, "POST", f"/api/v1/moves/{move['id']}/complete")
    assert status == 200 and failed["status"] == "Failed"
    assert failed["failure_step"] == "UpdatingDirectory"
    await lab.settle()
    alice = await mailbox(lab, "alice@contoso.test")
    assert (alice["server"], alice["message_count"], alice["in_transit"]) == ("EX2003-A", 2,
                                                                              False)
    assert alice["home_server_name"].endswith("/cn=EX2003-A")
    status, report = await api(lab, "GET", f"/api/v1/moves/{move['id']}/report")
    failure = ET.fromstring(report).find("mailbox/failure")
    assert status == 200 and failure is not None and failure.get("step") == "UpdatingDirectory"


async def test_2003_wizard_fails_over_the_bad_item_limit(lab: Lab) -> None:
    move = await start(lab, "bob@contoso.test", "EX2003-B", bad_items=4)
    failed = await run_until(lab, move["id"], "Failed")
    assert failed["status_detail"] == "FailedBadItemLimit" and failed["bad_item_limit"] == 3
    assert "limit of 3" in failed["failure_reason"]
    assert (await mailbox(lab, "bob@contoso.test"))["server"] == "EX2003-A"


async def test_2003_wizard_cannot_open_mapi_when_rpc_is_blocked(lab: Lab) -> None:
    await api(lab, "POST", "/api/v1/rpc", {"a": "EX2003-B", "b": "EX2003-A", "allowed": False})
    move = await start(lab, "alice@contoso.test", "EX2003-B")
    assert (move["status"], move["status_detail"]) == ("Failed", "FailedMAPI")
    assert "RPC is blocked" in move["failure_reason"]
    assert not (await mailbox(lab, "alice@contoso.test"))["in_transit"]


async def test_2003_wizard_batch_runs_four_at_a_time(lab: Lab) -> None:
    users = [f"user{n:03d}@contoso.test" for n in (1, 5, 9, 13, 17, 21)]
    moves = [await start(lab, u, "EX2003-B", batch="wave1") for u in users]
    most = 0
    while True:
        rows = [await show(lab, m["id"]) for m in moves]
        running = sum(r["status"] == "InProgress" for r in rows)
        most = max(most, running)
        if all(r["status"] == "Completed" for r in rows):
            break
        await lab.advance(10)
    assert most == 4
    assert {(await mailbox(lab, u))["server"] for u in users} == {"EX2003-B"}


async def test_invalid_move_requests(lab: Lab) -> None:
    bad = [({"engine": "robocopy"}, 400), ({"fail_at": "teatime"}, 400),
           ({"bad_items": -1}, 400), ({"hold": "yes"}, 400), ({"colour": "red"}, 400),
           ({"move_host": "NOPE"}, 404)]
    for extra, code in bad:
        status, doc = await api(lab, "POST", "/api/v1/moves",
                                {"mailbox": "alice@contoso.test", "target": "EX2003-B", **extra})
        assert status == code and "error" in doc, (extra, doc)
    move = await start(lab, "alice@contoso.test", "EX2003-B", hold=True)
    status, _ = await api(lab, "POST", f"/api/v1/moves/{move['id']}/suspend")
    assert status == 409  # only MRS requests suspend
