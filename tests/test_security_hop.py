"""Forged hop tokens, over real sockets: an ``X-Mailflow-Hop`` header that the lab did not
sign is removed and its mail taken as new mail; the lab's own hop still takes a resent
message once; and the audit sees a 250 that stored nothing."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from typing import Any

import aiosmtplib
import pytest

from mailflow.cli.main import main
from mailflow.runtime.lab import Lab
from routing.categorizer import HOP_HEADER, Submission
from stores import audit, meta
from stores.backend import Tx
from stores.schema import MIGRATIONS
from tests.conftest import LabFactory
from tests.helpers import api, mailbox, queue_depth, queue_id, send

CAROL = "carol@contoso.test"  # on EX2003-B: mail to her from EX2003-A crosses the SMTP hop
ALICE = "alice@contoso.test"  # on EX2003-A


async def smtp_send(lab: Lab, server: str, data: bytes, rcpts: tuple[str, ...] = (CAROL,),
                    helo: str = "client.example.net") -> str:
    """DATA ``data`` to ``server`` from an SMTP client; the queue id its 250 names."""
    host, port = lab.endpoint_address(server)
    async with aiosmtplib.SMTP(hostname=host, port=port, start_tls=False,
                               local_hostname=helo) as smtp:
        _, reply = await smtp.sendmail("mallory@example.net", list(rcpts), data)
    return queue_id(reply)


async def trace_stages(lab: Lab, message: str) -> list[str]:
    status, doc = await api(lab, "GET", f"/api/v1/messages/{message}")
    assert status == 200, doc
    return [t["stage"] for t in doc["trace"]]


async def clean_audit(lab: Lab) -> dict[str, Any]:
    status, report = await api(lab, "GET", "/api/v1/audit")
    assert status == 200 and report["clean"], report["problems"]
    return dict(report)


async def relayed_to_carol(lab: Lab) -> str:
    """A message to carol sent to EX2003-A, relayed over the hop and delivered on EX2003-B."""
    message = queue_id(await send(lab, "EX2003-A", CAROL, subject="genuine"))
    await lab.settle()
    assert (await mailbox(lab, CAROL))["message_count"] == 1
    return message


FORGERIES = {
    "the issue's": "{id}.0",
    "a full-length MAC": "{id}.{id}." + "0" * 64,
    "non-ASCII": "{id}.0.\u00e9\u00e9",
    "folded": "{id}.0\r\n X-Injected: yes",
}


@pytest.mark.parametrize("forged", FORGERIES.values(), ids=FORGERIES.keys())
async def test_a_forged_hop_token_naming_a_relayed_message_is_new_mail(lab: Lab,
                                                                        forged: str) -> None:
    # The worst case: the queue id (readable through the API) of a message that did cross
    # the hop to the same server for the same recipient. It used to get 250 and be dropped.
    genuine = await relayed_to_carol(lab)
    header = HOP_HEADER + b": " + forged.format(id=genuine).encode() + b"\r\n"

    answered = await smtp_send(lab, "EX2003-B", header + b"Subject: forged\r\n\r\nx\r\n")
    await lab.settle()

    assert answered != genuine
    assert (await mailbox(lab, CAROL))["message_count"] == 2
    status, raw = await api(lab, "GET", f"/api/v1/messages/{answered}/raw")
    assert status == 200 and "Subject: forged" in raw
    assert HOP_HEADER.decode() not in raw and "X-Injected" not in raw
    stages = await trace_stages(lab, answered)
    assert stages.count("delivered") == 1 and "hop-refused" in stages
    report = await clean_audit(lab)
    # Acknowledged: the genuine message to EX2003-A, its hop to EX2003-B, the forged one.
    assert (report["delivered"], report["acknowledged"]) == (2, 3)


async def capture_hops(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Record the data of every message the lab's endpoints take with a hop header."""
    seen: list[bytes] = []
    accept = lab.accept

    async def recording(submission: Submission) -> str:
        if submission.data.startswith(HOP_HEADER):
            seen.append(submission.data)
        return await accept(submission)

    monkeypatch.setattr(lab, "accept", recording)
    return seen


async def test_the_labs_own_hop_resent_after_a_lost_250_is_taken_once(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    hops = await capture_hops(lab, monkeypatch)
    genuine = await relayed_to_carol(lab)
    assert len(hops) == 1 and hops[0].startswith(HOP_HEADER + b": " + genuine.encode())

    # EX2003-A's resend after its 250 was lost: the very bytes, on a new connection.
    helo = "EX2003-A.contoso.test"
    assert await smtp_send(lab, "EX2003-B", hops[0], helo=helo) == genuine
    await lab.settle()

    assert (await mailbox(lab, CAROL))["message_count"] == 1
    stages = await trace_stages(lab, genuine)
    assert stages.count("delivered") == 1 and "duplicate" in stages
    report = await clean_audit(lab)
    assert (report["delivered"], report["acknowledged"]) == (1, 3)

    # Signed for EX2003-B: sent to EX2003-A, the same header does not verify.
    other = await smtp_send(lab, "EX2003-A", hops[0], helo=helo)
    await lab.settle()
    assert other != genuine
    assert (await mailbox(lab, CAROL))["message_count"] == 2
    assert "hop-refused" in await trace_stages(lab, other)
    await clean_audit(lab)


async def test_the_hop_secret_is_kept_in_the_store_across_restarts(
    lab_factory: LabFactory
) -> None:
    lab = await lab_factory.start()
    key = await lab.transport.hop_key()
    assert len(key) == 32
    assert lab.store.read_sync(lambda c: meta.get(c, meta.HOP_SECRET)) == key.hex()
    await lab_factory.stop(lab)

    lab = await lab_factory.start()
    assert await lab.transport.hop_key() == key


@pytest.mark.sqlite_only
async def test_a_data_directory_from_before_the_hop_secret_still_relays_once(
    lab_factory: LabFactory
) -> None:
    # Mail waits in EX2003-A's link to EX2003-B when the lab stops ...
    lab = await lab_factory.start()
    await lab.endpoints["EX2003-B"].stop()
    await send(lab, "EX2003-A", CAROL)
    await lab.settle()
    assert await queue_depth(lab, "EX2003-A", "smtp:EX2003-B") == 1
    await lab_factory.stop(lab)
    # ... and the store is as the version before this one left it (schema 5).
    conn = sqlite3.connect(lab.data_dir / "mailflow.db", isolation_level=None)
    # (The tables of every later migration go too.)
    later = re.findall(r"CREATE TABLE (\w+)", "".join(MIGRATIONS[5:]))
    conn.executescript("".join(f"DROP TABLE {table};" for table in later)
                       + f" DELETE FROM meta WHERE key = '{meta.HOP_SECRET}';"
                       " UPDATE schema_version SET version = 5;")
    conn.close()

    lab = await lab_factory.start()  # migrated; the queued pair's token is signed when sent
    await lab.advance(lab.scenario.defaults.link_retry_seconds)  # the link was in Retry

    assert await queue_depth(lab, "EX2003-A", "smtp:EX2003-B") == 0
    assert (await mailbox(lab, CAROL))["message_count"] == 1
    assert (await clean_audit(lab))["acknowledged"] == 1  # the hop's 250


def lost_to_carol(message: str) -> Any:
    """A 250 for ``message`` to carol on EX2003-B that stored nothing, as the code before
    the MAC wrote it (it no longer can)."""
    return lambda tx: audit.acknowledge(tx, message, "EX2003-B", [CAROL])


def lost_resend(message: str) -> Any:
    """A 250 for a "resend" of a hop that EX2003-B never took, as a forged token got: its
    recipient has a pair of that message, but the new mail was not stored."""
    def write(tx: Tx) -> None:
        audit.acknowledge(tx, message, "EX2003-B", [ALICE], hop=f"{message}.0",
                          duplicate=True)
    return write


@pytest.mark.parametrize(("lost", "problem"), [
    (lost_to_carol, "stored no such pair"),
    (lost_resend, "which it never took: nothing was stored"),
], ids=["unstored", "resend-of-nothing"])
async def test_the_audit_sees_an_acknowledged_message_that_was_not_stored(
    lab: Lab, capsys: pytest.CaptureFixture[str], lost: Any, problem: str
) -> None:
    alice = queue_id(await send(lab, "EX2003-A", ALICE))
    await lab.settle()
    await clean_audit(lab)

    await lab.store.write(lost(alice))

    status, report = await api(lab, "GET", "/api/v1/audit")
    assert status == 200 and not report["clean"]
    assert len(report["problems"]) == 1 and alice in report["problems"][0]
    assert problem in report["problems"][0]
    code = await asyncio.to_thread(main, ["audit", "--api", lab.http_url])
    out = capsys.readouterr().out
    assert code == 1 and "AUDIT FAILED" in out and problem in out
