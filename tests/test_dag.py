"""DAG databases in a running lab (issue 19), on the lab clock, mail over real SMTP: the data
guarantee stalls and fails moves, a dismounted database stalls them as MDBOffline, and a
failover carries mailboxes, moves and waiting mail to the new active copy."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from mailflow.cli.main import main
from mailflow.runtime.lab import Lab
from mailflow.scenarios import load
from tests.conftest import LabFactory
from tests.helpers import api, mailbox, queue_row, sample, scrape, send
from tests.test_moves import run_until, show, start

CAROL, ALICE = "carol@contoso.test", "alice@contoso.test"
DB01 = "/api/v1/databases/DAG-DB01"
pytestmark = pytest.mark.lab(scenario="exchange-2010-dag")


async def change(lab: Lab, path: str, body: Any = None) -> dict[str, Any]:
    status, doc = await api(lab, "POST", f"{DB01}{path}", body)
    assert status == 200, doc
    return dict(doc)


async def lag_all(lab: Lab, copy_queue: int) -> None:
    """Both passive copies of DAG-DB01 (SecondCopy) lag by ``copy_queue`` log files."""
    for server in ("EX2010-R2", "EX2010-D1"):
        await change(lab, f"/copies/{server}/lag", {"copy_queue_length": copy_queue})


async def until_detail(lab: Lab, move_id: str, detail: str, limit: int = 100) -> dict[str, Any]:
    for _ in range(limit):
        move = await show(lab, move_id)
        if move["status_detail"] == detail:
            return move
        await lab.advance(10)
    raise AssertionError(f"move {move_id} never showed {detail}: {move}")


async def test_a_lagging_target_stalls_the_move_until_the_lag_clears(lab: Lab) -> None:
    await lag_all(lab, 50)
    move = await start(lab, CAROL, "EX2010-R1")
    stalled = await until_detail(lab, move["id"], "StalledDueToHA")
    assert stalled["status"] == "InProgress"
    # The request waits in the DAG database's System Mailbox, on its active copy's server.
    status, box = await api(lab, "GET", f"{DB01}/system-mailbox")
    assert status == 200 and box["server"] == "EX2010-R1", box
    assert box["system_mailbox"] == "SystemMailbox{DAG-DB01}"
    assert [m["move"] for m in box["folders"][0]["messages"]] == [move["id"]]
    await lab.advance(600)  # two DataGuaranteeCheckPeriods: still stalled
    assert (await show(lab, move["id"]))["status_detail"] == "StalledDueToHA"
    text = await scrape(lab)
    assert sample(text, "mailflow_moves_stalled_due_to_ha") == 1
    assert (sample(text, "mailflow_move_ha_stall_longest_seconds") or 0) >= 600
    await change(lab, "/copies/EX2010-D1/lag", {"copy_queue_length": 0})
    done = await run_until(lab, move["id"], "Completed")
    assert done["total_stalled_due_to_ha_duration"] >= 600, done
    assert (await mailbox(lab, CAROL))["server"] == "EX2010-R1"


async def test_data_replication_wait_before_completion_then_timeout(lab: Lab) -> None:
    move = await start(lab, CAROL, "EX2010-R1")
    await until_detail(lab, move["id"], "IncrementalSync")
    await change(lab, "/copies/EX2010-R2/suspend")
    await change(lab, "/copies/EX2010-D1/suspend")
    await until_detail(lab, move["id"], "DataReplicationWait")
    await lab.advance(1800 + 300)  # DataGuaranteeTimeout and one more check
    failed = await show(lab, move["id"])
    assert (failed["status"], failed["status_detail"]) == ("Failed", "FailedOther"), failed
    assert (await mailbox(lab, CAROL))["server"] == "EX2010-D2"


@pytest.mark.lab(scenario="exchange-2010-dag", defaults={"enable_data_guarantee_check": 0})
async def test_with_the_check_disabled_copies_are_ignored(lab: Lab) -> None:
    await lag_all(lab, 50)
    move = await start(lab, CAROL, "EX2010-R1")
    done = await run_until(lab, move["id"], "Completed")
    assert done["total_stalled_due_to_ha_duration"] == 0


def with_constraint(constraint: str) -> Any:
    dag = load("exchange-2010-dag")
    return dataclasses.replace(dag, databases=tuple(
        dataclasses.replace(d, constraint=constraint) for d in dag.databases))


@pytest.mark.parametrize("constraint", ["None", "SecondCopy"])
async def test_a_dismounted_target_fails_the_move_after_30_minutes_of_retries(
        lab_factory: LabFactory, constraint: str) -> None:
    lab = await lab_factory.start(scenario=with_constraint(constraint))
    await change(lab, "/dismount")
    move = await start(lab, CAROL, "EX2010-R1")
    await until_detail(lab, move["id"], "MDBOffline")
    await lab.advance(60 * 30 - 60)
    assert (await show(lab, move["id"]))["status_detail"] == "MDBOffline"
    await lab.advance(120)
    failed = await show(lab, move["id"])
    assert (failed["status"], failed["status_detail"]) == ("Failed", "FailedMAPI"), failed


async def test_failover_mid_move_continues_on_the_new_active_copy(lab: Lab) -> None:
    before = (await mailbox(lab, CAROL))["message_count"]
    move = await start(lab, CAROL, "EX2010-R1")
    await until_detail(lab, move["id"], "IncrementalSync")
    await send(lab, "EX2010-D2", CAROL, subject="before failover")
    doc = await change(lab, "/failover", {"server": "EX2010-R2"})
    assert doc["active_server"] == "EX2010-R2" and doc["mounted"]
    await send(lab, "EX2010-D1", CAROL, subject="after failover")
    done = await run_until(lab, move["id"], "Completed")
    assert done["target"] == "EX2010-R2"
    await lab.settle()
    after = await mailbox(lab, CAROL)
    assert (after["server"], after["message_count"]) == ("EX2010-R2", before + 2)
    _, report = await api(lab, "GET", "/api/v1/audit")
    assert report["clean"], report


async def test_with_constraint_none_a_failover_strands_the_move(lab_factory: LabFactory) -> None:
    """Seed 001: without a constraint MRS does not follow the failover; it retries the copy
    it used every 30 s for 30 minutes, then fails, and the mailbox stays on its source."""
    lab = await lab_factory.start(scenario=with_constraint("None"))
    before = (await mailbox(lab, CAROL))["message_count"]
    move = await start(lab, CAROL, "EX2010-R1")
    await until_detail(lab, move["id"], "IncrementalSync")
    await change(lab, "/failover", {"server": "EX2010-R2"})
    await until_detail(lab, move["id"], "MDBOffline")
    await send(lab, "EX2010-D1", CAROL, subject="while stranded")
    await lab.advance(60 * 31)
    failed = await show(lab, move["id"])
    assert (failed["status"], failed["status_detail"]) == ("Failed", "FailedMAPI"), failed
    assert failed["failure_side"] == "Target"
    await lab.settle()
    after = await mailbox(lab, CAROL)
    assert (after["server"], after["message_count"], after["in_transit"]) == (
        "EX2010-D2", before + 1, False)
    _, report = await api(lab, "GET", "/api/v1/audit")
    assert report["clean"], report


async def test_mail_for_a_dismounted_database_waits_and_flows_after_failover(lab: Lab) -> None:
    before = (await mailbox(lab, ALICE))["message_count"]
    await change(lab, "/dismount")
    await send(lab, "EX2010-D1", ALICE, subject="while dismounted")
    await lab.advance(60)
    row = await queue_row(lab, "EX2010-R1", "mapi:EX2010-R1-DB01")
    assert (row["message_count"], row["status"]) == (1, "Retry"), row
    assert "MdbOffline" in (row["last_error"] or "")
    await change(lab, "/failover", {"server": "EX2010-D1"})
    await lab.settle()
    after = await mailbox(lab, ALICE)
    assert (after["server"], after["message_count"]) == ("EX2010-D1", before + 1)


async def test_api_refusals_and_metrics(lab: Lab) -> None:
    assert (await api(lab, "GET", "/api/v1/databases/NOPE"))[0] == 404
    status, doc = await api(lab, "POST", f"{DB01}/copies/EX2010-R1/lag",
                            {"copy_queue_length": 5})
    assert status == 400 and "active copy" in doc["error"]
    status, doc = await api(lab, "POST", f"{DB01}/copies/EX2010-R2/lag",
                            {"copy_queue_length": -1})
    assert status == 400 and "copy_queue_length" in doc["error"]
    assert (await api(lab, "POST", f"{DB01}/dismount", token=None))[0] == 401
    assert (await api(lab, "POST", f"{DB01}/mount"))[0] == 409
    await change(lab, "/copies/EX2010-R2/lag", {"copy_queue_length": 7})
    text = await scrape(lab)
    assert sample(text, "mailflow_database_copy_queue_length", database="DAG-DB01",
                  server="EX2010-R2") == 7
    assert sample(text, "mailflow_database_mounted", database="DAG-DB01",
                  server="EX2010-R1") == 1
    assert sample(text, "mailflow_database_mounted", database="DAG-DB01",
                  server="EX2010-R2") == 0
    _, events = await api(lab, "GET", "/api/v1/events?limit=1000")
    assert any(e["event_id"] == 1040 and "copy queue length 7" in e["text"] for e in events)


async def test_the_db_commands(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    """``mailflow db`` against the running lab (the CLI's HTTP client runs in a thread)."""
    where = ["--api", lab.http_url, "--data", str(lab.data_dir)]
    for argv in (["db", "lag", "DAG-DB01", "EX2010-D1", "--copy-queue", "12"],
                 ["db", "suspend-copy", "DAG-DB01", "EX2010-R2"],
                 ["db", "show", "DAG-DB01"]):
        assert await asyncio.to_thread(main, [*argv, *where]) == 0
    out = capsys.readouterr().out
    assert "EX2010-D1  DUBLIN   3                      Healthy    12" in out
    assert "EX2010-R2  REDMOND  2                      Suspended" in out
    assert await asyncio.to_thread(main, ["db", "dismount", "NOPE", *where]) != 0
    assert "404: no database 'NOPE'" in capsys.readouterr().err
