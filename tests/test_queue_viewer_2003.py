"""Queue Viewer (2003) completeness over the API and the CLI: Delete all messages (with NDR /
no NDR) of a queue, no Freeze on an X.400 queue, Find Messages by state with a result cap."""

from __future__ import annotations

import asyncio
import urllib.parse

import pytest

from mailflow.cli.main import main
from mailflow.runtime.lab import Lab
from tests.helpers import api, hold_move, mailbox, queue_depth, queue_id, send

ALICE = "alice@contoso.test"
BOB = "bob@contoso.test"  # a local sender: an NDR to him is delivered to his mailbox
DEFERRED = "/api/v1/queues/EX2003-A/deferred"


async def deferred_mail(lab: Lab, count: int, sender: str = "tester@example.net") -> list[str]:
    """``count`` messages to alice, held in EX2003-A's deferred queue by a held move."""
    await hold_move(lab, ALICE, "EX2003-B")
    ids = [queue_id(await send(lab, "EX2003-A", ALICE, sender=sender, subject=f"m{n}"))
           for n in range(count)]
    await lab.settle()
    assert await queue_depth(lab, "EX2003-A", "deferred") == count
    return ids


async def clean_audit(lab: Lab) -> None:
    status, report = await api(lab, "GET", "/api/v1/audit")
    assert status == 200 and report["clean"], report["problems"]


async def test_delete_all_without_ndr_empties_the_queue_frozen_mail_too(lab: Lab) -> None:
    ids = await deferred_mail(lab, 3, sender=BOB)
    assert (await api(lab, "POST", f"{DEFERRED}/messages/{ids[0]}/freeze"))[0] == 200
    status, doc = await api(lab, "DELETE", f"{DEFERRED}/messages?ndr=false")
    assert status == 200, doc
    assert (doc["messages"], doc["recipients"], doc["ndr"]) == (3, 3, False)
    await lab.settle()
    assert await queue_depth(lab, "EX2003-A", "deferred") == 0
    assert (await mailbox(lab, BOB))["message_count"] == 0  # no NDR
    await clean_audit(lab)
    status, doc = await api(lab, "DELETE", f"{DEFERRED}/messages")
    assert status == 404, doc


async def test_delete_all_with_ndr_sends_one_ndr_per_message(lab: Lab) -> None:
    await deferred_mail(lab, 2, sender=BOB)
    status, doc = await api(lab, "DELETE", f"{DEFERRED}/messages?ndr=true")
    assert status == 200 and doc["messages"] == 2, doc
    await lab.settle()
    assert await queue_depth(lab, "EX2003-A", "deferred") == 0
    assert (await mailbox(lab, BOB))["message_count"] == 2
    _, events = await api(lab, "GET", "/api/v1/events")
    assert any(e["event_id"] == 1029 and "All 2 message(s)" in e["text"] for e in events)
    await clean_audit(lab)


async def test_find_messages_by_state_with_a_cap(lab: Lab) -> None:
    ids = await deferred_mail(lab, 3)
    await api(lab, "POST", f"{DEFERRED}/messages/{ids[1]}/freeze")
    _, frozen = await api(lab, "GET", f"{DEFERRED}/messages?state=frozen")
    assert [m["id"] for m in frozen] == [ids[1]]
    _, retry = await api(lab, "GET", f"{DEFERRED}/messages?state=retry")
    assert [m["id"] for m in retry] == [ids[0], ids[2]]
    _, capped = await api(lab, "GET", f"{DEFERRED}/messages?state=retry&limit=1")
    assert [m["id"] for m in capped] == [ids[0]]
    status, bad = await api(lab, "GET", f"{DEFERRED}/messages?state=active")
    assert status == 400 and "state must be one of" in bad["error"], bad


async def test_an_x400_queue_cannot_be_frozen(lab: Lab) -> None:
    assert (await api(lab, "POST", "/api/v1/services/EX2003-A/mta/stop"))[0] == 200
    message = queue_id(await send(lab, "EX2003-A", "dave@contoso.test"))
    await lab.settle()
    _, queues = await api(lab, "GET", "/api/v1/queues")
    x400 = [q["queue"] for q in queues if q["queue"].startswith("mta:x400:")
            and q["message_count"]]
    assert x400 == ["mta:x400:REDMOND-LONDON X.400"]
    path = f"/api/v1/queues/EX2003-A/{urllib.parse.quote(x400[0])}"
    status, doc = await api(lab, "POST", f"{path}/freeze")
    assert status == 409 and "X.400 queues cannot be frozen" in doc["error"], doc
    # Its messages can be frozen, as in ESM.
    assert (await api(lab, "POST", f"{path}/messages/{message}/freeze"))[0] == 200
    empty = urllib.parse.quote("mta:x400:REDMOND-LONDON X.400")  # no mail on EX2003-B: still
    assert (await api(lab, "POST", f"/api/v1/queues/EX2003-B/{empty}/freeze"))[0] == 409
    assert (await api(lab, "POST", f"/api/v1/queues/NOSUCH/{empty}/freeze"))[0] == 404


async def test_the_cli_deletes_all_and_finds_by_state(
        lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    ids = await deferred_mail(lab, 2)
    await api(lab, "POST", f"{DEFERRED}/messages/{ids[0]}/freeze")

    async def run(*args: str) -> str:
        argv = [*args, "--api", lab.http_url, "--data", str(lab.data_dir)]
        assert await asyncio.to_thread(main, argv) == 0
        return capsys.readouterr().out

    shown = await run("queue", "show", "EX2003-A", "deferred", "--state", "frozen", "--limit",
                      "5")
    assert ids[0] in shown and ids[1] not in shown
    out = await run("queue", "delete-all", "EX2003-A", "deferred")
    assert "2 message(s) deleted from EX2003-A\\deferred without NDR" in out
    await clean_audit(lab)
