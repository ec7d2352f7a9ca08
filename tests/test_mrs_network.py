"""MRS and the network, its limits and the request's statistics, on the lab clock."""

from __future__ import annotations

from typing import Any

import pytest

from mailflow.runtime.lab import Lab
from tests.helpers import api, mailbox, send
from tests.test_moves import run_until, show, start

FRANK, GRACE, IVAN = "frank@contoso.test", "grace@contoso.test", "ivan@contoso.test"


async def rpc(lab: Lab, a: str, b: str, allowed: bool) -> None:
    status, doc = await api(lab, "POST", "/api/v1/rpc", {"a": a, "b": b, "allowed": allowed})
    assert status == 200, doc


async def blocked_move(lab: Lab) -> dict[str, Any]:
    """frank@ to EX2010-B with MRS (on EX2010-A, the site's CAS) cut off from the target."""
    await rpc(lab, "EX2010-A", "EX2010-B", False)
    move = await start(lab, FRANK, "EX2010-B")
    assert move["mrs_server_name"] == "EX2010-A"
    await lab.advance(30)  # InitialSeeding ends: MRS cannot log on to the target
    stalled = await show(lab, move["id"])
    assert (stalled["status"], stalled["status_detail"]) == ("InProgress", "TransientFailure")
    return stalled


@pytest.mark.lab(scenario="exchange-2010")
async def test_rpc_blocked_to_the_target_fails_with_failed_network(lab: Lab) -> None:
    move = await blocked_move(lab)
    retries = []
    for _ in range(3):
        current = await show(lab, move["id"])
        retries.append(round(current["due_at"] - lab.clock.now()))
        await lab.advance(30)
    assert retries == [30, 30, 30]
    await lab.advance(60 * 30)
    failed = await show(lab, move["id"])
    assert (failed["status"], failed["status_detail"]) == ("Failed", "FailedNetwork")
    assert failed["failure_side"] == "Target" and failed["failure_timestamp"] is not None
    assert "MaxRetries (60)" in failed["failure_reason"]
    state = await mailbox(lab, FRANK)
    assert (state["server"], state["in_transit"]) == ("EX2010-A", False)


@pytest.mark.lab(scenario="exchange-2010")
async def test_rpc_back_within_the_window_goes_on_and_completes(lab: Lab) -> None:
    move = await blocked_move(lab)
    await lab.advance(10 * 60)
    assert (await show(lab, move["id"]))["status_detail"] == "TransientFailure"
    await rpc(lab, "EX2010-A", "EX2010-B", True)
    await send(lab, "EX2010-A", FRANK, subject="during the move")
    done = await run_until(lab, move["id"], "Completed")
    assert done["initial_seeding_completed_timestamp"] is not None
    assert done["total_in_progress_duration"] >= 10 * 60
    assert any(line.endswith("InProgress: TransientFailure") for line in done["report"])
    await lab.settle()
    state = await mailbox(lab, FRANK)
    assert (state["server"], state["in_transit"]) == ("EX2010-B", False)


@pytest.mark.lab(scenario="exchange-2010")
async def test_a_stopped_mrs_service_holds_the_request(lab: Lab) -> None:
    status, doc = await api(lab, "POST", "/api/v1/services/EX2010-A/mrs/stop")
    assert status == 200, doc
    move = await start(lab, FRANK, "EX2010-B")
    await lab.advance(30)
    assert (await show(lab, move["id"]))["status_detail"] == "TransientFailure"
    await api(lab, "POST", "/api/v1/services/EX2010-A/mrs/start")
    await run_until(lab, move["id"], "Completed")


@pytest.mark.lab(scenario="exchange-2010",
                 defaults={"mrs_max_active_moves_per_target_mdb": 5,
                           "mrs_max_total_moves_per_mrs": 1})
async def test_limits_keep_requests_queued_with_their_position(lab: Lab) -> None:
    users = ["user001@contoso.test", "user004@contoso.test", "user007@contoso.test"]
    moves = []
    for user in users:  # one second apart: the queue is in order of QueuedTimestamp
        moves.append(await start(lab, user, "EX2010-B"))
        await lab.advance(1)
    shown = [await show(lab, m["id"]) for m in moves]
    assert [m["status"] for m in shown] == ["InProgress", "Queued", "Queued"]
    assert [m["position_in_queue"] for m in shown] == [None, "1 out of 2", "2 out of 2"]
    for m in moves:
        await run_until(lab, m["id"], "Completed")


@pytest.mark.lab(scenario="exchange-2010")
async def test_archive_moves_only_to_2010(lab: Lab) -> None:
    status, doc = await api(lab, "POST", "/api/v1/moves", {"mailbox": GRACE,
                                                          "target": "EX2007-A"})
    assert status == 400 and "archive" in doc["error"], doc
    move = await start(lab, GRACE, "EX2010-B")
    await run_until(lab, move["id"], "Completed")
    state = await mailbox(lab, GRACE)
    assert (state["server"], state["archive_database"]) == ("EX2010-B", "EX2010-B-DB01")


@pytest.mark.lab(scenario="exchange-2010")
async def test_offline_pull_from_2003_created_suspended(lab: Lab) -> None:
    move = await start(lab, IVAN, "EX2010-A", suspend=True, suspend_comment="after hours",
                       batch="night")
    assert (move["status"], move["suspend_comment"], move["batch"]) == (
        "Suspended", "after hours", "night")
    assert (move["online"], move["direction"]) == (False, "pull")
    await lab.advance(600)
    status, resumed = await api(lab, "POST", f"/api/v1/moves/{move['id']}/resume")
    assert status == 200 and resumed["status"] == "Queued"
    await lab.settle()
    assert (await mailbox(lab, IVAN))["in_transit"]
    done = await run_until(lab, move["id"], "Completed")
    assert done["total_suspended_duration"] == 600
    assert done["queued_timestamp"] < done["start_timestamp"] < done["completion_timestamp"]
    assert done["overall_duration"] > done["total_in_progress_duration"] > 0
    assert done["bytes_transferred_per_minute"] > 0
