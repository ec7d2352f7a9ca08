"""Delay notifications and NDRs (RFC 3464) over real SMTP and on the lab clock: when they
are sent, what they say, where they go (mailbox, smarthost, ``unreachable``), loop safety."""

from __future__ import annotations

import asyncio
import email
from email.message import Message
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from mailflow.runtime.lab import Lab
from routing import dsn
from stores.topology import Defaults, Server, Version
from tests.conftest import LabFactory
from tests.helpers import (
    RefuseNobody,
    api,
    hold_move,
    queue_depth,
    queue_id,
    queue_row,
    sample,
    scrape,
    send,
)

ALICE, BOB, CAROL, DAVE = (f"{n}@contoso.test" for n in ("alice", "bob", "carol", "dave"))
HOUR, DAY = 3600.0, 86400.0


async def inbox(lab: Lab, address: str) -> list[dict[str, Any]]:
    status, rows = await api(lab, "GET", f"/api/v1/mailboxes/{address}/messages")
    assert status == 200, rows
    return list(rows)


async def report(lab: Lab, message: str) -> Message:
    """A stored message parsed by the stdlib, checked to be an RFC 3464 report."""
    status, raw = await api(lab, "GET", f"/api/v1/messages/{message}/raw")
    assert status == 200
    parsed = email.message_from_string(raw)
    assert parsed.get_content_type() == "multipart/report"
    assert parsed.get_param("report-type") == "delivery-status"
    parts = parsed.get_payload()
    assert isinstance(parts, list)
    assert [p.get_content_type() for p in parts] == [
        "text/plain", "message/delivery-status", "text/rfc822-headers"]
    return parsed


def status_blocks(parsed: Message) -> list[Message]:
    """The per-message block, then one block per recipient, of the delivery-status part."""
    blocks = parsed.get_payload()[1].get_payload()  # type: ignore[index]
    assert isinstance(blocks, list)
    return blocks


def human(parsed: Message) -> str:
    text = parsed.get_payload()[0].get_payload(decode=True)  # type: ignore[index]
    assert isinstance(text, bytes)
    return text.decode()


async def test_delay_notice_at_12_hours_and_ndr_at_2_days(lab: Lab) -> None:
    """Acceptance 1: bob's mail to alice, whose move is held, on a 2003 server."""
    await hold_move(lab, ALICE, "EX2003-B")
    original = queue_id(await send(lab, "EX2003-A", ALICE, sender=BOB, subject="late mail"))
    await lab.settle()
    assert await queue_depth(lab, "EX2003-A", "deferred") == 1

    await lab.advance(12 * HOUR - 60)
    assert await inbox(lab, BOB) == []
    await lab.advance(60)
    [delay] = await inbox(lab, BOB)
    assert delay["mail_from"] == "" and delay["subject"] == "Delivery Status Notification (Delay)"
    parsed = await report(lab, delay["id"])
    per_message, per_rcpt = status_blocks(parsed)
    assert per_message["Reporting-MTA"] == "dns; EX2003-A.contoso.test"
    assert per_message["Arrival-Date"]
    assert (per_rcpt["Final-Recipient"], per_rcpt["Action"], per_rcpt["Status"]) == (
        f"rfc822; {ALICE}", "delayed", "4.2.0")
    assert "ecMailboxInTransit" in per_rcpt["Diagnostic-Code"]
    assert per_rcpt["Will-Retry-Until"]
    assert "Delivery to the following recipients has been delayed." in human(parsed)
    original_headers = parsed.get_payload()[2].get_payload()  # type: ignore[index]
    assert "Subject: late mail" in original_headers
    assert await queue_depth(lab, "EX2003-A", "deferred") == 1

    await lab.advance(2 * DAY - 12 * HOUR)
    assert await queue_depth(lab, "EX2003-A", "deferred") == 0
    delay_again, ndr = await inbox(lab, BOB)
    assert delay_again == delay and ndr["subject"] == "Undeliverable: late mail"
    parsed = await report(lab, ndr["id"])
    _, per_rcpt = status_blocks(parsed)
    assert (per_rcpt["Action"], per_rcpt["Status"]) == ("failed", "4.4.7")
    assert "4.4.7" in per_rcpt["Diagnostic-Code"]
    text = human(parsed)
    assert "Could not deliver the message in the time limit specified" in text
    assert "<EX2003-A.contoso.test #4.4.7>" in text

    _, doc = await api(lab, "GET", f"/api/v1/messages/{original}")
    assert doc["recipients"][0]["state"] == "ndr"
    assert [d["id"] for d in doc["dsns"]] == [delay["id"], ndr["id"]]
    dsn_traces = [t["detail"] for t in doc["trace"] if t["stage"] == "dsn"]
    assert dsn_traces == [f"delay notification sent as {delay['id']} to <{BOB}>",
                          f"NDR 4.4.7 sent as {ndr['id']} to <{BOB}>"]
    _, audit = await api(lab, "GET", "/api/v1/audit")
    assert audit["clean"] and (audit["ndr"], audit["delivered"]) == (1, 2)
    assert sample(await scrape(lab), "mailflow_ndrs_total", server="EX2003-A",
                  status="4.4.7") == 1


@pytest.mark.lab(scenario="exchange-2010")
async def test_2007_server_notifies_after_4_hours_in_its_own_words(lab: Lab) -> None:
    heidi, grace = "heidi@contoso.test", "grace@contoso.test"
    status, _ = await api(lab, "POST", "/api/v1/moves", {  # offline: in transit throughout
        "mailbox": heidi, "target": "EX2010-A", "hold": True, "engine": "movemailbox2007"})
    assert status == 201
    await send(lab, "EX2007-A", heidi, sender=grace, subject="to heidi")
    await lab.settle()
    before = len(await inbox(lab, grace))
    await lab.advance(4 * HOUR - 60)
    assert len(await inbox(lab, grace)) == before
    await lab.advance(60)
    notices = (await inbox(lab, grace))[before:]
    assert [n["subject"] for n in notices] == ["Delivery delayed:to heidi"]
    parsed = await report(lab, notices[0]["id"])
    assert "Delivery is delayed to these recipients or distribution lists:" in human(parsed)
    assert status_blocks(parsed)[0]["Reporting-MTA"] == "dns; EX2007-A.contoso.test"


async def test_recipient_unknown_after_acceptance_gets_the_2003_ndr(lab: Lab) -> None:
    await hold_move(lab, CAROL, "EX2003-A")
    await send(lab, "EX2003-B", CAROL, sender=BOB, subject="to carol")
    await lab.settle()
    # The address goes from the directory while its mail waits in deferred delivery.
    await lab.store.write(lambda tx: tx.execute(
        "DELETE FROM proxy_addresses WHERE mailbox=?", (CAROL,)))
    await lab.advance(lab.scenario.defaults.deferred_retry_seconds)
    assert await queue_depth(lab, "EX2003-B", "deferred") == 0
    [ndr] = await inbox(lab, BOB)  # from EX2003-B to bob on EX2003-A, over SMTP
    parsed = await report(lab, ndr["id"])
    _, per_rcpt = status_blocks(parsed)
    assert (per_rcpt["Status"], per_rcpt["Action"]) == ("5.1.1", "failed")
    text = human(parsed)
    assert "The e-mail account does not exist at this organization." in text
    assert "<EX2003-B.contoso.test #5.1.1>" in text
    assert sample(await scrape(lab), "mailflow_ndrs_total", server="EX2003-B",
                  status="5.1.1") == 1


async def test_the_mta_ndrs_a_local_sender_when_it_gives_up(lab: Lab) -> None:
    defaults = lab.scenario.defaults
    move = await hold_move(lab, DAVE, "EX2003-A")
    await send(lab, "EX55-LON", DAVE, sender=BOB, subject="to dave")
    await api(lab, "POST", f"/api/v1/moves/{move}/complete")
    await lab.settle()
    await lab.advance(defaults.mta_max_open_retries * defaults.mta_open_interval_seconds)
    assert await queue_depth(lab, "EX55-LON", "mta:EX2003-A") == 0
    [ndr] = await inbox(lab, BOB)  # over the X.400 connector, from EX55-LON
    parsed = await report(lab, ndr["id"])
    per_message, per_rcpt = status_blocks(parsed)
    assert per_message["Reporting-MTA"] == "dns; EX55-LON.contoso.test"
    assert per_rcpt["Status"] == "4.4.7" and "144 open retries" in per_rcpt["Diagnostic-Code"]


async def test_no_dsn_for_a_null_sender_and_never_about_a_dsn(lab: Lab) -> None:
    await hold_move(lab, ALICE, "EX2003-B")
    bounce = queue_id(await send(lab, "EX2003-A", ALICE, sender="", subject="a bounce"))
    # A forged local sender: the NDR to it fails 5.1.1, and that failure reports nothing.
    ghost = queue_id(await send(lab, "EX2003-A", ALICE, sender="ghost@contoso.test",
                                subject="from a ghost"))
    await lab.settle()
    status, deleted = await api(
        lab, "DELETE", f"/api/v1/queues/EX2003-A/deferred/messages/{ghost}?ndr=true")
    assert status == 200 and deleted["ndr"] is True
    _, doc = await api(lab, "GET", f"/api/v1/messages/{ghost}")
    [ndr] = doc["dsns"]
    _, ndr_doc = await api(lab, "GET", f"/api/v1/messages/{ndr['id']}")
    assert ndr_doc["mail_from"] == "" and ndr_doc["dsn_of"] == ghost
    assert ndr_doc["recipients"][0]["state"] == "ndr"
    assert ndr_doc["dsns"] == []
    assert any(t["stage"] == "dsn" and "null" in t["detail"] for t in ndr_doc["trace"])

    await lab.advance(2 * DAY)
    _, doc = await api(lab, "GET", f"/api/v1/messages/{bounce}")
    assert doc["recipients"][0]["state"] == "ndr" and doc["dsns"] == []
    assert any(t["stage"] == "dsn" and "null" in t["detail"] for t in doc["trace"])
    _, audit = await api(lab, "GET", "/api/v1/audit")
    assert audit["clean"] and (audit["accepted"], audit["deleted"], audit["ndr"]) == (3, 1, 2)


async def test_a_dsn_to_an_external_sender_waits_in_unreachable_without_a_smarthost(
        lab: Lab) -> None:
    await hold_move(lab, ALICE, "EX2003-B")
    message = queue_id(await send(lab, "EX2003-A", ALICE, subject="from outside"))
    await lab.settle()
    await api(lab, "DELETE", f"/api/v1/queues/EX2003-A/deferred/messages/{message}?ndr=true")
    waiting = await queue_row(lab, "EX2003-A", "unreachable")
    assert waiting["message_count"] == 1
    assert waiting["identity"] == "EX2003-A\\Messages with an unreachable destination"
    assert "no connector to the external domain example.net" in waiting["last_error"]
    assert f"NDR 4.3.2 about {message}" in waiting["last_error"]


# -- the outbound smarthost -------------------------------------------------------------------


class Catcher(RefuseNobody):
    """What a tester's mail catcher does: take every message; refuse nobody@ for good."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []
        self.arrived = asyncio.Event()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        self.received.append((envelope.mail_from or "", list(envelope.rcpt_tos),
                              envelope.content))
        self.arrived.set()
        return "250 2.0.0 caught"


async def test_an_ndr_to_an_external_sender_goes_to_the_smarthost(
    lab_factory: LabFactory
) -> None:
    """Acceptance 4."""
    catcher = Catcher()
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(catcher), "127.0.0.1", 0)
    try:
        lab = await lab_factory.start(smarthost=f"127.0.0.1:{server.sockets[0].getsockname()[1]}")
        await hold_move(lab, ALICE, "EX2003-B")
        message = queue_id(await send(lab, "EX2003-A", ALICE, sender="tester@example.net",
                                      subject="to alice"))
        await lab.settle()
        status, _ = await api(
            lab, "DELETE", f"/api/v1/queues/EX2003-A/deferred/messages/{message}?ndr=true")
        assert status == 200
        await lab.settle()
        [(mail_from, rcpts, content)] = catcher.received
        assert (mail_from, rcpts) == ("<>", ["tester@example.net"])
        parsed = email.message_from_bytes(content)
        assert parsed.get_content_type() == "multipart/report"
        _, per_rcpt = status_blocks(parsed)
        assert (per_rcpt["Final-Recipient"], per_rcpt["Status"]) == (
            f"rfc822; {ALICE}", "4.3.2")
        _, doc = await api(lab, "GET", f"/api/v1/messages/{message}")
        _, ndr = await api(lab, "GET", f"/api/v1/messages/{doc['dsns'][0]['id']}")
        assert ndr["recipients"][0]["state"] == "relayed"
        assert any(t["stage"] == "relayed" and "smarthost" in t["detail"]
                   for t in ndr["trace"])
        _, audit = await api(lab, "GET", "/api/v1/audit")
        assert audit["clean"] and (audit["relayed"], audit["deleted"]) == (1, 1)
    finally:
        await lab_factory.stop_all()  # first: its link keeps connections to the smarthost
        server.close()
        await server.wait_closed()


@pytest.mark.lab(relay_networks=("127.0.0.0/8",))
async def test_the_smarthost_relays_and_its_refusal_comes_back_as_an_ndr(
    lab_factory: LabFactory
) -> None:
    catcher = Catcher()
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(catcher), "127.0.0.1", 0)
    try:
        lab = await lab_factory.start(smarthost=f"127.0.0.1:{server.sockets[0].getsockname()[1]}")
        host, port = lab.endpoint_address("EX2003-A")
        async with aiosmtplib.SMTP(hostname=host, port=port, start_tls=False) as smtp:
            await smtp.sendmail(BOB, ["friend@example.org", "nobody@example.org"],
                                b"From: <bob@contoso.test>\r\nSubject: out\r\n\r\nhi\r\n")
        await lab.settle()
        [(mail_from, rcpts, _)] = catcher.received
        assert (mail_from, rcpts) == (BOB, ["friend@example.org"])
        [ndr] = await inbox(lab, BOB)
        parsed = await report(lab, ndr["id"])
        _, per_rcpt = status_blocks(parsed)
        assert (per_rcpt["Final-Recipient"], per_rcpt["Status"]) == (
            "rfc822; nobody@example.org", "5.1.1")
        assert "No such user here" in per_rcpt["Diagnostic-Code"]
        assert await queue_depth(lab, "EX2003-A", "smarthost") == 0
    finally:
        await lab_factory.stop_all()  # first: its link keeps connections to the smarthost
        server.close()
        await server.wait_closed()


@pytest.mark.lab(relay_networks=("127.0.0.0/8",))
async def test_a_smarthost_that_does_not_answer_puts_its_queue_in_retry(
    lab_factory: LabFactory
) -> None:
    closed = await asyncio.get_running_loop().create_server(asyncio.Protocol, "127.0.0.1", 0)
    port = closed.sockets[0].getsockname()[1]
    closed.close()
    await closed.wait_closed()  # nothing listens on that port any more
    lab = await lab_factory.start(smarthost=f"127.0.0.1:{port}")
    await send(lab, "EX2003-A", "friend@example.org", sender=BOB)
    await lab.settle()
    row = await queue_row(lab, "EX2003-A", "smarthost")
    assert (row["message_count"], row["status"]) == (1, "Retry")
    assert row["identity"] == "EX2003-A\\Outbound smarthost"


# -- the arithmetic ---------------------------------------------------------------------------


def test_delay_and_expiry_by_version() -> None:
    defaults = Defaults()
    by_version = {v.value: Server("S", v, "X", 0) for v in Version}
    assert dsn.delay_due(0.0, by_version["2003"], defaults) == 12 * HOUR
    assert dsn.delay_due(0.0, by_version["2000"], defaults) == 12 * HOUR
    assert dsn.delay_due(0.0, by_version["2010"], defaults) == 4 * HOUR
    assert dsn.delay_due(0.0, by_version["5.5"], defaults) is None
    assert dsn.expiry_due(0.0, by_version["2003"], "normal", defaults) == 2 * DAY
    assert dsn.expiry_due(0.0, by_version["2007"], "normal", defaults) == 2 * DAY
    assert dsn.expiry_due(0.0, by_version["5.5"], "urgent", defaults) == 2 * DAY
    assert dsn.expiry_due(0.0, by_version["5.5"], "normal", defaults) == 7 * DAY
    assert dsn.expiry_due(0.0, by_version["5.5"], "non-urgent", defaults) == 10 * DAY


@pytest.mark.parametrize("version", [Version.V2003, Version.V2010])
@pytest.mark.parametrize("char", ["\x0b", "\x0c", "\x1c", "\r", "\n", "\x00", "\u2028"])
def test_control_characters_of_the_original_never_break_a_dsn(version: Version,
                                                              char: str) -> None:
    # A Subject with a vertical tab (or a smarthost reply with one) made the email package
    # refuse the whole DSN as a header injection, so the sender was never told.
    report = dsn.Report(
        server=Server("S", version, "X", 0), domain="contoso.test", sender="a@fabrikam.test",
        subject=f"hi{char}X-Evil: 1", arrival=0.0, now=0.0,
        original_headers=b"Subject: hi\r\n",
        recipients=(dsn.RecipientStatus(
            rcpt="c@contoso.test", action="failed", status="5.1.1",
            diagnostic=f"smtp; 550 5.1.1 no{char}X-Evil: 2", text="t", last_attempt=0.0),),
    )
    parsed = email.message_from_bytes(dsn.build(report))
    headers = [parsed, *(part for part in parsed.walk())]
    status = next(p for p in parsed.walk() if p.get_content_type() == "message/delivery-status")
    headers += status.get_payload()
    assert all(part["X-Evil"] is None for part in headers)
    assert parsed["Subject"].startswith("Undeliverable: hi")
