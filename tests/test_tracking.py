"""The exports, over the API and the CLI: the message tracking log (Get-MessageTrackingLog's
fields) of a deferred-then-released message, a DSN linked to its original, CSV and filters;
``mailflow queue list --format postqueue`` (postqueue -j's JSON lines)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path

import pytest

from mailflow.cli.main import main
from mailflow.runtime.lab import Lab
from stores import tracking
from tests.helpers import api, hold_move, queue_id, send
from tests.process import LabProcess, cli

ALICE = "alice@contoso.test"


def in_order(events: list[str], expected: list[str]) -> bool:
    """``expected`` is a subsequence of ``events``."""
    rest = iter(events)
    return all(any(event == wanted for event in rest) for wanted in expected)


async def test_a_deferred_then_released_message_reads_receive_defer_resubmit_deliver(
        lab: Lab) -> None:
    move = await hold_move(lab, ALICE, "EX2003-B")
    message = queue_id(await send(lab, "EX2003-A", ALICE, subject="held"))
    await lab.settle()
    assert (await api(lab, "POST", f"/api/v1/moves/{move}/complete"))[0] == 200
    await lab.settle()
    status, rows = await api(lab, "GET", f"/api/v1/tracking?message={message}")
    assert status == 200
    events = [row["EventId"] for row in rows]
    assert in_order(events, ["RECEIVE", "DEFER", "RESUBMIT", "SEND", "RECEIVE", "DELIVER"]), \
        events
    first, last = rows[0], rows[-1]
    assert (first["Source"], first["Sender"], first["Recipients"]) == \
        ("SMTP", "tester@example.net", [ALICE])
    assert (last["EventId"], last["Source"], last["ServerHostname"]) == \
        ("DELIVER", "STOREDRIVER", "EX2003-B.contoso.test")
    assert first["MessageId"] == "<held@example.net>" and first["MessageSubject"] == "held"
    deferred = [r for r in rows if r["EventId"] == "DEFER"]
    assert deferred[0]["Source"] == "STOREDRIVER"
    status, only = await api(lab, "GET", f"/api/v1/tracking?message={message}&event_id=deliver")
    assert [r["EventId"] for r in only] == ["DELIVER"]


async def test_a_dsn_is_linked_to_its_original_by_reference(lab: Lab) -> None:
    await hold_move(lab, ALICE, "EX2003-B")
    message = queue_id(await send(lab, "EX2003-A", ALICE, subject="to delete"))
    await lab.settle()
    status, doc = await api(lab, "DELETE", f"/api/v1/queues/EX2003-A/deferred/messages/{message}"
                            "?ndr=true")
    assert status == 200, doc
    await lab.settle()
    _, rows = await api(lab, "GET", f"/api/v1/tracking?message={message}")
    events = [(r["EventId"], r["Source"]) for r in rows]
    assert ("FAIL", "ADMIN") in events and ("DSN", "DSN") in events, events
    dsn_id = next(r["Reference"] for r in rows if r["EventId"] == "DSN")
    _, dsn_rows = await api(lab, "GET", f"/api/v1/tracking?message={dsn_id}")
    assert dsn_rows and dsn_rows[0]["EventId"] == "RECEIVE"
    assert dsn_rows[0]["Reference"] == message
    _, bad = await api(lab, "GET", "/api/v1/tracking?event_id=NOPE")
    assert bad["error"]


async def test_csv_has_exchange_columns(lab: Lab) -> None:
    await send(lab, "EX2003-A", ALICE, subject="csv")
    await lab.settle()
    status, text = await api(lab, "GET", "/api/v1/tracking?format=csv&recipient=" + ALICE)
    assert status == 200
    table = list(csv.DictReader(io.StringIO(text)))
    assert tuple(table[0]) == tracking.FIELDS
    assert [r["EventId"] for r in table] == ["RECEIVE", "DELIVER"]


def test_the_cli_prints_csv_and_json(tmp_path: Path, lab_process: LabProcess) -> None:
    cli(lab_process.data, "send", "--to", ALICE)
    out = cli(lab_process.data, "tracking", "--recipient", ALICE).stdout
    assert out.splitlines()[0].split(",") == list(tracking.FIELDS)
    rows = json.loads(cli(lab_process.data, "tracking", "--event-id", "receive",
                          "--format", "json").stdout)
    assert rows and {r["EventId"] for r in rows} == {"RECEIVE"}


async def run_cli(lab: Lab, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """`mailflow ARGS --api URL` against ``lab``, in a thread (the lab serves on this loop)."""
    code = await asyncio.to_thread(main, [*args, "--api", lab.http_url])
    assert code == 0
    return capsys.readouterr().out


async def test_queue_list_postqueue_lines_parse_with_their_fields(
        lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    await hold_move(lab, ALICE, "EX2003-B")
    message = queue_id(await send(lab, "EX2003-A", ALICE, subject="queued"))
    await lab.settle()
    out = await run_cli(lab, capsys, "queue", "list", "--format", "postqueue")
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 1
    line = lines[0]
    assert set(line) >= {"queue_name", "queue_id", "arrival_time", "message_size", "sender",
                         "recipients"}
    assert (line["queue_name"], line["queue_id"], line["sender"]) == \
        ("deferred", message, "tester@example.net")
    assert isinstance(line["arrival_time"], int) and line["message_size"] > 0
    assert [r["address"] for r in line["recipients"]] == [ALICE]
    assert "delay_reason" in line["recipients"][0]
    table = await run_cli(lab, capsys, "queue", "list", "EX2003-B")
    assert table.strip() == "(none)"
