"""Attacks on the SMTP endpoints (issue 16, items 2, 6 and 8), over real sockets.

Header injection through HELO/EHLO; clients holding every connection slot of an
endpoint while the lab's own hop must still get through; address probing with RCPT;
paths that are not RFC 5321 paths (encoded-words, missing brackets, comments). The
default lab: alice@ on EX2003-A, carol@ on EX2003-B (mail to her from EX2003-A crosses
the SMTP hop). Reads are bounded (``WAIT``) only so that a server that never answers
fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import email
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from email.policy import default

import pytest

from mailflow.runtime.lab import Lab
from mailflow.smtp import replies
from mailflow.smtp.replies import Reply
from stores.topology import Defaults
from tests.helpers import api, send
from tests.smtpwire import Wire, connect

ALICE = "alice@contoso.test"
CAROL = "carol@contoso.test"
SENDER = "x@example.net"
CLIENT = "client.example.net"


@asynccontextmanager
async def session(lab: Lab, server: str = "EX2003-A") -> AsyncIterator[Wire]:
    wire = await connect(lab, server)
    try:
        assert (await wire.command(f"EHLO {CLIENT}"))[0] == 250
        yield wire
    finally:
        await wire.close()


def reply(r: Reply) -> tuple[int, str]:
    return r.code, r.text


async def accepted(lab: Lab) -> int:
    status, report = await api(lab, "GET", "/api/v1/audit")
    assert status == 200 and report["clean"], report
    return int(report["accepted"])


async def carol_raw(lab: Lab) -> str:
    _, items = await api(lab, "GET", f"/api/v1/mailboxes/{CAROL}/messages?limit=10")
    assert len(items) == 1, items
    status, raw = await api(lab, "GET", f"/api/v1/messages/{items[0]['id']}/raw")
    assert status == 200
    return str(raw)


# -- item 2: header injection through HELO/EHLO -----------------------------------------------


@pytest.mark.parametrize("name", [
    b"evil\rX-Injected: yes", b"evil\r", b"a\x0bb", b"a\x1b[31mb", b"a\x7fb", b"a\tb",
    "a\u2028X-Injected: yes".encode(), "a\x85b".encode(), "a\u202eb".encode(),
])
@pytest.mark.parametrize("verb", [b"EHLO", b"HELO"])
async def test_a_hello_name_with_a_control_character_is_refused(
        lab: Lab, verb: bytes, name: bytes) -> None:
    wire = await connect(lab)
    try:
        assert await wire.command(verb + b" " + name) == reply(replies.S501_HELO_CONTROL)
        # Refused means no name: the transaction cannot start on it.
        assert await wire.command(f"MAIL FROM:<{SENDER}>") == reply(replies.S503_HELO_FIRST)
        assert (await wire.command(f"EHLO {CLIENT}"))[0] == 250
        assert (await wire.command(f"MAIL FROM:<{SENDER}>"))[0] == 250
    finally:
        await wire.close()


async def test_an_injected_hello_never_becomes_a_header_after_the_hop(lab: Lab) -> None:
    wire = await connect(lab)
    try:
        assert (await wire.command(b"EHLO evil\rX-Injected: yes"))[0] == 501
        assert (await wire.command("EHLO evil.example.net"))[0] == 250
        assert (await wire.command(f"MAIL FROM:<{SENDER}>"))[0] == 250
        assert (await wire.command(f"RCPT TO:<{CAROL}>"))[0] == 250
        code, _ = await wire.data(b"Subject: hop\r\n\r\nHello.\r\n")
        assert code == 250
    finally:
        await wire.close()
    await lab.settle()
    raw = await carol_raw(lab)
    parsed = email.message_from_string(raw, policy=default)
    assert "X-Injected" not in parsed
    assert "\r" not in raw.replace("\r\n", "")
    received = [str(value) for value in parsed.get_all("Received", [])]
    assert any(value.startswith("from evil.example.net ") for value in received), received


# -- item 6: connection slots and address probing ----------------------------------------------


@pytest.mark.lab(defaults={"smtp_max_connections": 3})
async def test_the_hop_delivers_while_clients_hold_every_public_slot(lab: Lab) -> None:
    idle = [await connect(lab, "EX2003-B") for _ in range(3)]
    try:
        extra = await connect(lab, "EX2003-B", greet=False)
        assert (await extra.reply())[0] == 421
        await extra.close()
        # Mail to carol crosses the EX2003-A -> EX2003-B hop, which is not one of them.
        await send(lab, "EX2003-A", CAROL, subject="past the idle clients")
        await lab.settle()
        status, rows = await api(lab, "GET", "/api/v1/queues")
        assert status == 200
        assert [r for r in rows if r["message_count"]] == []
        status, mailbox = await api(lab, "GET", f"/api/v1/mailboxes/{CAROL}")
        assert status == 200 and mailbox["message_count"] == 1
    finally:
        for wire in idle:
            await wire.close()


async def test_the_hop_port_is_loopback_and_published_nowhere(lab: Lab) -> None:
    endpoint = lab.endpoints["EX2003-B"]
    host, port = endpoint.hop_address
    assert host == "127.0.0.1" and port not in (0, endpoint.port)
    status, doc = await api(lab, "GET", "/api/v1/topology")
    assert status == 200 and str(port) not in json.dumps(doc)
    lab_file = (lab.data_dir / "lab.json").read_text()
    assert f" {port}\n" not in lab_file and f"{port}]" not in lab_file


PROBING = {"smtp_unknown_recipients_before_delay": 2,
           "smtp_unknown_recipient_delay_seconds": 0.125,
           "smtp_max_unknown_recipients": 5}


def record_delays(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The delays the sessions ask for (each still taken, so nothing else changes)."""
    delays: list[float] = []
    real: Callable[[float], Awaitable[None]] = asyncio.sleep

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        await real(seconds)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    return delays


@pytest.mark.lab(defaults=PROBING)
async def test_address_probing_is_slowed_then_closed_with_421(
        lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    delays = record_delays(monkeypatch)
    async with session(lab) as wire:
        assert (await wire.command(f"MAIL FROM:<{SENDER}>"))[0] == 250
        for n in range(4):
            assert await wire.command(f"RCPT TO:<nobody{n}@contoso.test>") == reply(
                replies.S550_UNKNOWN_USER)
            # Known recipients are not probes and are answered at once.
            assert (await wire.command(f"RCPT TO:<{ALICE}>"))[0] == 250
        # The 3rd and 4th unknown, past the first 2, were answered late.
        assert [d for d in delays if d == 0.125] == [0.125, 0.125]
        assert await wire.command("RCPT TO:<nobody4@contoso.test>") == reply(
            replies.S550_UNKNOWN_USER)
        assert await wire.reply() == (421, replies.S421_TOO_MANY_UNKNOWN.text.format(
            hostname="EX2003-A.contoso.test"))
        assert await wire.closed()
    assert await accepted(lab) == 0


@pytest.mark.lab(defaults=PROBING)
async def test_the_lab_hop_is_not_limited_as_a_probe(lab: Lab) -> None:
    host, port = lab.endpoints["EX2003-B"].hop_address
    reader, writer = await asyncio.open_connection(host, port)
    wire = Wire(reader, writer)
    try:
        assert (await wire.reply())[0] == 220
        assert (await wire.command("EHLO EX2003-A.contoso.test"))[0] == 250
        assert (await wire.command(f"MAIL FROM:<{SENDER}>"))[0] == 250
        for n in range(8):
            assert (await wire.command(f"RCPT TO:<nobody{n}@contoso.test>"))[0] == 550
        assert (await wire.command("NOOP"))[0] == 250
    finally:
        await wire.close()


def test_the_probing_limits_default_like_postfix() -> None:
    defaults = Defaults()
    assert (defaults.smtp_unknown_recipients_before_delay,
            defaults.smtp_unknown_recipient_delay_seconds,
            defaults.smtp_max_unknown_recipients) == (10, 1.0, 20)


# -- item 8: what a path may be ----------------------------------------------------------------


@pytest.mark.parametrize(("path", "answer"), [
    # email's parser would decode these to alice@contoso.test.
    ("<=?utf-8?q?alice?=@contoso.test>", replies.S553_BAD_RECIPIENT),
    ('<"=?utf-8?q?alice?="@contoso.test>', replies.S553_BAD_RECIPIENT),
    ("<=?utf-8?b?YWxpY2U=?=@contoso.test>", replies.S553_BAD_RECIPIENT),
    # Not an RFC 5321 path.
    ("<alice@contoso.test", replies.S501_RCPT_SYNTAX),
    ("alice@contoso.test", replies.S501_RCPT_SYNTAX),
    ("<alice@contoso.test> (comment)", replies.S501_RCPT_SYNTAX),
    ("<alice(comment)@contoso.test>", replies.S501_RCPT_SYNTAX),
    ("(comment)<alice@contoso.test>", replies.S501_RCPT_SYNTAX),
    ("<alice@contoso.test (comment)>", replies.S501_RCPT_SYNTAX),
    ("< alice@contoso.test>", replies.S501_RCPT_SYNTAX),
    ("Alice <alice@contoso.test>", replies.S501_RCPT_SYNTAX),
    ("<alice@contoso.test>\tNOTIFY=NEVER", replies.S501_RCPT_SYNTAX),
])
async def test_a_recipient_that_is_not_a_mailbox_path_is_refused(
        lab: Lab, path: str, answer: Reply) -> None:
    async with session(lab) as wire:
        assert (await wire.command(f"MAIL FROM:<{SENDER}>"))[0] == 250
        assert await wire.command(f"RCPT TO:{path}") == reply(answer)
        assert await wire.command("DATA") == reply(replies.S503_NEED_RCPT)
    await lab.settle()
    assert await accepted(lab) == 0


@pytest.mark.parametrize(("path", "answer"), [
    ("<=?utf-8?q?x?=@example.net>", replies.S553_BAD_SENDER),
    ("<x@example.net", replies.S501_MAIL_SYNTAX),
    ("x@example.net", replies.S501_MAIL_SYNTAX),
    ("<x@example.net> (comment)", replies.S501_MAIL_SYNTAX),
    ("<x(comment)@example.net>", replies.S501_MAIL_SYNTAX),
])
async def test_a_sender_that_is_not_a_mailbox_path_is_refused(
        lab: Lab, path: str, answer: Reply) -> None:
    async with session(lab) as wire:
        assert await wire.command(f"MAIL FROM:{path}") == reply(answer)
        assert await wire.command(f"RCPT TO:<{ALICE}>") == reply(replies.S503_NEED_MAIL)


@pytest.mark.parametrize(("mail", "rcpt"), [
    (f"MAIL FROM:<{SENDER}>", f"RCPT TO:<@relay.example,@b.example:{ALICE}>"),  # source route
    (f"MAIL FROM: <{SENDER}> SIZE=100", f"RCPT TO: <{ALICE}>"),  # SP after the colon
    ("MAIL FROM:<>", f"RCPT TO:<{ALICE.upper()}>"),
])
async def test_paths_rfc_5321_allows_are_taken(lab: Lab, mail: str, rcpt: str) -> None:
    async with session(lab) as wire:
        assert (await wire.command(mail))[0] == 250
        assert (await wire.command(rcpt))[0] == 250
        code, _ = await wire.data(b"Subject: allowed\r\n\r\nHello.\r\n")
        assert code == 250
    await lab.settle()
    status, mailbox = await api(lab, "GET", f"/api/v1/mailboxes/{ALICE}")
    assert status == 200 and mailbox["message_count"] == 1
