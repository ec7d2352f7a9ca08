"""Hostile SMTP input, over real sockets: each gets its reply, the session ends where it
should, the endpoint goes on serving others, and nothing refused leaves a trace.

The default lab: domain contoso.test, alice@ on EX2003-A, carol@ on EX2003-B (mail to
her from EX2003-A crosses the SMTP hop). Everything is sent as raw bytes, since no
client library sends what these tests send. Reads are bounded (``WAIT``) only so that
a server that never answers fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import socket
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mailflow import scenarios
from mailflow.runtime.lab import Lab
from mailflow.smtp import replies
from routing import categorizer
from stores.topology import Defaults, MailboxSpec, Scenario
from tests.conftest import LabFactory, build_lab
from tests.helpers import api, sample, scrape, send
from tests.smtpwire import WAIT, Wire, connect

SERVER = "EX2003-A"
ALICE = "alice@contoso.test"
SENDER = "x@example.net"


@asynccontextmanager
async def session(lab: Lab, server: str = SERVER, helo: str = "EHLO") -> AsyncIterator[Wire]:
    """A session past its greeting and EHLO (or HELO); closed on the way out."""
    wire = await connect(lab, server)
    try:
        assert (await wire.command(f"{helo} client.example.net"))[0] == 250
        yield wire
    finally:
        await wire.close()


def body(subject: str, extra: bytes = b"") -> bytes:
    return (f"From: <{SENDER}>\r\nTo: <{ALICE}>\r\nSubject: {subject}\r\n\r\n".encode()
            + extra + b"Hello.\r\n")


async def transaction(
    wire: Wire, content: bytes, *, mail: str = f"MAIL FROM:<{SENDER}>", rcpt: str = ALICE
) -> tuple[int, str]:
    """MAIL, RCPT, DATA and ``content`` (CRLF lines, dot-stuffed) with its end dot."""
    assert (await wire.command(mail))[0] == 250
    assert (await wire.command(f"RCPT TO:<{rcpt}>"))[0] == 250
    assert (await wire.command("DATA"))[0] == 354
    await wire.send(content + b".\r\n")
    return await wire.reply()


QUEUED = re.compile(r"2\.6\.0 <(?P<id>[0-9A-F]+)> Queued mail for delivery")


def queued(reply: tuple[int, str]) -> str:
    code, text = reply
    match = QUEUED.fullmatch(text)
    assert code == 250 and match is not None, reply
    return match["id"]


async def audit(lab: Lab) -> dict[str, Any]:
    status, report = await api(lab, "GET", "/api/v1/audit")
    assert status == 200 and report["clean"], report
    return dict(report)


async def queued_anywhere(lab: Lab) -> dict[tuple[str, str], int]:
    status, rows = await api(lab, "GET", "/api/v1/queues")
    assert status == 200
    return {(r["server"], r["queue"]): r["message_count"] for r in rows if r["message_count"]}


async def assert_nothing_stored(lab: Lab, accepted_before: int) -> None:
    await lab.settle()
    assert (await audit(lab))["accepted"] == accepted_before
    assert await queued_anywhere(lab) == {}


async def assert_still_serves(lab: Lab) -> None:
    """Another client still gets a message through, and it is delivered."""
    before = (await audit(lab))["accepted"]
    status, _ = await api(lab, "GET", "/healthz")
    assert status == 200
    reply = await send(lab, SERVER, ALICE, subject="still serving")
    assert QUEUED.fullmatch(reply), reply
    await lab.settle()
    assert (await audit(lab))["accepted"] == before + 1
    assert await queued_anywhere(lab) == {}


# -- junk, binary, NUL, errors ----------------------------------------------------------------


@pytest.mark.parametrize(("line", "reply"), [
    (b"XYZZY", replies.S500_UNRECOGNIZED),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", replies.S500_NUL),  # a TLS ClientHello
    (b"\xff\xfe\xfd binary \x80\x81", replies.S500_SYNTAX_ERROR),
    (b"GET / HTTP/1.1", replies.S500_UNRECOGNIZED),
    (b"", replies.S500_SYNTAX_ERROR),
    (b"   ", replies.S500_SYNTAX_ERROR),
    (b"\xc3\xa9T\xc3\xa9", replies.S500_SYNTAX_ERROR),
    (b"NOOP\x00", replies.S500_NUL),
    (b"MAIL FROM:<a\x00b@example.net>", replies.S500_NUL),
    (b"\x00", replies.S500_NUL),
    (b"EXPN staff", replies.S502_NOT_IMPLEMENTED),
    (b"AUTH PLAIN AGFsaWNlAHNlY3JldA==", replies.S502_NOT_IMPLEMENTED),
    (b"STARTTLS now", replies.S501_SYNTAX),  # offered (docs/tls-and-auth.md), takes no argument
])
async def test_junk_binary_and_nul_get_their_reply_and_the_session_goes_on(
    lab: Lab, line: bytes, reply: replies.Reply
) -> None:
    before = (await audit(lab))["accepted"]
    async with session(lab) as wire:
        assert (await wire.command(line)) == reply
        # The session goes on, and a transaction in it still works.
        assert await wire.command("NOOP") == (250, "2.0.0 OK")
        queued(await transaction(wire, body("after junk")))
    await lab.settle()
    assert (await audit(lab))["accepted"] == before + 1
    await assert_still_serves(lab)


async def test_too_many_errors_end_the_session_with_421(lab: Lab) -> None:
    before = (await audit(lab))["accepted"]
    async with session(lab) as wire:
        assert (await wire.command(f"MAIL FROM:<{SENDER}>"))[0] == 250
        assert (await wire.command(f"RCPT TO:<{ALICE}>"))[0] == 250
        # Refusals by policy are not protocol errors: they do not count.
        for _ in range(30):
            assert (await wire.command("RCPT TO:<someone@example.org>"))[0] == 550
        for n in range(1, 20):
            assert (await wire.command(b"\x80junk"))[0] == 500, n
        assert (await wire.command("XYZZY"))[0] == 500  # the 20th
        code, text = await wire.reply()
        assert (code, text) == (421, "4.7.0 EX2003-A.contoso.test Too many errors, closing"
                                " connection")
        assert await wire.closed()
    await assert_nothing_stored(lab, before)
    await assert_still_serves(lab)


# -- line lengths -----------------------------------------------------------------------------


async def test_command_lines_are_limited_to_512_octets(lab: Lab) -> None:
    before = (await audit(lab))["accepted"]
    async with session(lab) as wire:
        # 512 octets with the CRLF is the limit (RFC 5321 §4.5.3.1.4); 513 is over.
        assert (await wire.command("NOOP " + "x" * 505))[0] == 250
        assert await wire.command("NOOP " + "x" * 506) == (500, "5.5.2 Line too long")
        # Far over the reader's own limit: read and dropped, the session goes on.
        assert await wire.command(b"NOOP " + b"x" * 200_000) == (500, "5.5.2 Line too long")
        assert await wire.command(b"RCPT TO:<" + b"a" * 5000 + b">") == (
            500, "5.5.2 Line too long")
        # MAIL may carry SIZE, BODY and SMTPUTF8 on top (RFC 1870, 1652, 6531): 562.
        mail = f"MAIL FROM:<{SENDER}> SIZE=1000 BODY=8BITMIME SMTPUTF8"
        padded = mail.replace("x@", "x" * (561 - len(mail)) + "@")
        assert len(padded) == 560
        code, _ = await wire.command(padded)
        assert code != 500
        assert (await wire.command("RSET"))[0] == 250
        assert (await wire.command(padded.replace("x@", "xx@")))[0] == 500
        queued(await transaction(wire, body("after long commands")))
    await lab.settle()
    assert (await audit(lab))["accepted"] == before + 1


async def test_text_lines_are_limited_to_1000_octets(lab: Lab) -> None:
    before = (await audit(lab))["accepted"]
    async with session(lab) as wire:
        # 998 characters and the CRLF: the longest line RFC 5321 §4.5.3.1.6 allows.
        fits = body("longest line", b"y" * 998 + b"\r\n" + b".." + b"z" * 997 + b"\r\n")
        message_id = queued(await transaction(wire, fits))
        too_long = body("too long", b"y" * 999 + b"\r\n")
        assert await transaction(wire, too_long) == (
            replies.S500_TEXT_LINE_TOO_LONG)
        # A line of megabytes is dropped as it arrives; the session goes on.
        huge = body("huge line", b"w" * 3_000_000 + b"\r\n")
        assert (await transaction(wire, huge))[0] == 500
        assert (await wire.command("NOOP"))[0] == 250
    await lab.settle()
    assert (await audit(lab))["accepted"] == before + 1
    status, raw = await api(lab, "GET", f"/api/v1/messages/{message_id}/raw")
    assert status == 200
    assert "\r\n" + "y" * 998 + "\r\n." + "z" * 997 + "\r\n" in raw  # unstuffed, intact
    await assert_still_serves(lab)


# -- bare LF ----------------------------------------------------------------------------------

BARE_LF = (521, "5.5.2 EX2003-A.contoso.test Syntax error: bare <LF> received; lines end"
                " with <CR><LF>")


@pytest.mark.parametrize("payload", [
    b"NOOP\n",
    b"MAIL FROM:<x@example.net>\nRCPT TO:<alice@contoso.test>\r\n",
    b"\n",
    b"NOOP " + b"x" * 5000 + b"\n",
])
async def test_a_bare_lf_in_a_command_ends_the_session(lab: Lab, payload: bytes) -> None:
    before = (await audit(lab))["accepted"]
    async with session(lab) as wire:
        await wire.send(payload)
        assert await wire.reply() == BARE_LF
        assert await wire.closed()
    await assert_nothing_stored(lab, before)
    await assert_still_serves(lab)


@pytest.mark.parametrize("content", [
    b"Subject: a\r\n\r\nline one\nline two\r\n",
    # SMTP smuggling: a second message hidden behind <LF>.<LF> or <LF>.<CR><LF>.
    b"Subject: a\r\n\r\nHello\n.\nMAIL FROM:<evil@example.net>\r\n",
    b"Subject: a\r\n\r\nHello\r\n.\nRCPT TO:<bob@contoso.test>\r\n",
    b"Subject: a\r\n\r\nHello\n.\r\nDATA\r\n",
])
async def test_a_bare_lf_in_data_ends_the_session_and_takes_nothing(
    lab: Lab, content: bytes
) -> None:
    before = (await audit(lab))["accepted"]
    async with session(lab) as wire:
        assert (await wire.command(f"MAIL FROM:<{SENDER}>"))[0] == 250
        assert (await wire.command(f"RCPT TO:<{ALICE}>"))[0] == 250
        assert (await wire.command("DATA"))[0] == 354
        with suppress(ConnectionError):
            await wire.send(content + b"\r\n.\r\nQUIT\r\n")
        assert await wire.reply() == BARE_LF
        assert await wire.closed()
    await assert_nothing_stored(lab, before)
    await assert_still_serves(lab)


# -- 8-bit data and SMTPUTF8 ------------------------------------------------------------------

EIGHT_BIT = "Grüße aus Köln\r\n".encode()


@pytest.mark.parametrize(("helo", "params", "expected"), [
    ("EHLO", " BODY=8BITMIME", 250),
    ("EHLO", " SMTPUTF8", 250),
    ("EHLO", "", 250),  # undeclared: taken as 8BITMIME, as Exchange and Postfix do
    ("EHLO", " BODY=7BIT", 554),
    ("HELO", "", 554),  # no ESMTP, so no 8BITMIME
])
async def test_8bit_data_needs_8bitmime(
    lab: Lab, helo: str, params: str, expected: int
) -> None:
    before = (await audit(lab))["accepted"]
    async with session(lab, helo=helo) as wire:
        reply = await transaction(wire, body("8-bit", EIGHT_BIT),
                                  mail=f"MAIL FROM:<{SENDER}>{params}")
        if expected == 554:
            assert reply == replies.S554_8BIT_NOT_DECLARED
            # 7-bit content in the same session is fine.
            queued(await transaction(wire, body("7-bit"), mail=f"MAIL FROM:<{SENDER}>{params}"))
        else:
            message_id = queued(reply)
    await lab.settle()
    assert (await audit(lab))["accepted"] == before + 1
    if expected == 250:
        # Every bit is kept (RFC 6152).
        status, raw = await api(lab, "GET", f"/api/v1/messages/{message_id}/raw")
        assert status == 200 and EIGHT_BIT.decode() in raw


async def test_body_parameter_takes_7bit_or_8bitmime_only(lab: Lab) -> None:
    async with session(lab) as wire:
        assert await wire.command(f"MAIL FROM:<{SENDER}> BODY=BINARYMIME") == (
            replies.S501_BAD_BODY)
        assert await wire.command(f"MAIL FROM:<{SENDER}> SMTPUTF8=yes") == (
            replies.S501_SMTPUTF8_VALUE)
        assert await wire.command(f"MAIL FROM:<{SENDER}> SIZE=big") == (
            replies.S501_BAD_SIZE)
        assert await wire.command(f"MAIL FROM:<{SENDER}> RET=HDRS") == (
            replies.S555_UNKNOWN_PARAMETER)
        assert (await wire.command(f"MAIL FROM:<{SENDER}>"))[0] == 250
        assert await wire.command(f"RCPT TO:<{ALICE}> NOTIFY=NEVER") == (
            replies.S555_UNKNOWN_PARAMETER)


ZOE = "zoë@contoso.test"


def with_zoe() -> Scenario:
    base = scenarios.load("mixed-2003")
    return dataclasses.replace(
        base, mailboxes=(*base.mailboxes, MailboxSpec(ZOE, "EX2003-A", "Zoë")))


@pytest.mark.lab(scenario=with_zoe())
async def test_smtputf8_addresses_are_accepted_when_declared(lab: Lab) -> None:
    async with session(lab) as wire:
        code, ehlo = await wire.command("EHLO client.example.net")
        assert code == 250 and "SMTPUTF8" in ehlo.splitlines()
        # Not declared: refused, for the sender and for a recipient (RFC 6531, X.6.7).
        assert await wire.command("MAIL FROM:<jörg@example.net>") == (
            replies.S553_UTF8_NOT_DECLARED)
        assert (await wire.command(f"MAIL FROM:<{SENDER}>"))[0] == 250
        assert await wire.command(f"RCPT TO:<{ZOE}>") == (
            replies.S553_UTF8_NOT_DECLARED)
        assert (await wire.command("RSET"))[0] == 250
        # Declared: taken, delivered to zoë on EX2003-A and, over the SMTP hop, to carol.
        content = "From: <jörg@example.net>\r\nTo: <zoë@contoso.test>\r\nSubject: Grüße\r\n" \
                  "\r\nHallo Zoë.\r\n".encode()
        assert (await wire.command("MAIL FROM:<jörg@example.net> SMTPUTF8"))[0] == 250
        assert (await wire.command(f"RCPT TO:<{ZOE}>"))[0] == 250
        assert (await wire.command("RCPT TO:<carol@contoso.test>"))[0] == 250
        assert (await wire.command("RCPT TO:<zoé@contoso.test>"))[0] == 550  # unknown
        assert (await wire.command("DATA"))[0] == 354
        await wire.send(content + b".\r\n")
        message_id = queued(await wire.reply())
        # Bounded: a hop that cannot relay a UTF-8 sender would retry for ever.
        await asyncio.wait_for(lab.settle(), WAIT)
        _, doc = await api(lab, "GET", f"/api/v1/messages/{message_id}")
        assert doc["mail_from"] == "jörg@example.net"
        assert sorted((r["rcpt"], r["state"]) for r in doc["recipients"]) == [
            ("carol@contoso.test", "delivered"), (ZOE, "delivered")]
        status, zoe = await api(lab, "GET", f"/api/v1/mailboxes/{quote(ZOE, safe='@')}")
        assert status == 200 and zoe["message_count"] == 1
        assert (await audit(lab))["accepted"] == 2


# -- pipelining -------------------------------------------------------------------------------


async def test_a_pipelining_flood_is_answered_in_order(lab: Lab) -> None:
    before = (await audit(lab))["accepted"]
    async with session(lab) as wire:
        _, ehlo = await wire.command("EHLO client.example.net")
        assert "PIPELINING" in ehlo.splitlines()
        users = [f"user{n:03d}@contoso.test" for n in range(1, 101)]
        batch = [b"NOOP", b"RSET"] * 2000
        for n in range(3):
            batch += [f"MAIL FROM:<{SENDER}>".encode(),
                      *(f"RCPT TO:<{u}>".encode() for u in users), b"RCPT TO:<alice@contoso.test>",
                      b"DATA", body(f"pipelined {n}") + b"."]
        batch.append(b"QUIT")
        await wire.send(b"\r\n".join(batch) + b"\r\n")

        # While it is being answered, another client is served.
        other = asyncio.ensure_future(send(lab, SERVER, "bob@contoso.test", subject="other"))
        codes = [(await wire.reply())[0] for _ in range(4000)]
        assert codes == [250] * 4000
        for _ in range(3):
            assert (await wire.reply())[0] == 250  # MAIL
            assert [(await wire.reply())[0] for _ in users] == [250] * 100
            assert (await wire.reply())[0] == 452  # the 101st recipient
            assert (await wire.reply())[0] == 354
            queued(await wire.reply())
        assert (await wire.reply())[0] == 221
        assert await wire.closed()
        assert QUEUED.fullmatch(await other)
    await lab.settle()
    assert (await audit(lab))["accepted"] == before + 301


async def test_a_client_that_floods_and_never_reads_does_not_block_others(lab: Lab) -> None:
    host, port = lab.endpoint_address(SERVER)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, port))
    _, writer = await asyncio.open_connection(sock=sock)
    try:
        # Megabytes of pipelined commands, each with a long reply, and never a read: the
        # endpoint stops reading it (its replies cannot leave, TCP backpressure) instead
        # of buffering, and serves everyone else meanwhile.
        flood = b"EHLO flood.example.net\r\n" * 100_000
        writer.write(flood)
        for n in range(3):
            assert QUEUED.fullmatch(await send(lab, SERVER, ALICE, subject=f"meanwhile {n}"))
        assert lab.endpoints[SERVER].connections >= 1
        assert writer.transport.get_write_buffer_size() > 0  # the flood is not all read
    finally:
        writer.transport.abort()
    await lab.settle()
    await assert_still_serves(lab)


async def test_a_batch_sent_before_the_client_closes_its_side_is_all_answered(lab: Lab) -> None:
    """``printf '...' | nc``: the whole batch, then EOF; every command is still answered."""
    wire = await connect(lab)
    try:
        batch = [b"EHLO client.example.net", f"MAIL FROM:<{SENDER}>".encode(),
                 f"RCPT TO:<{ALICE}>".encode(), b"DATA", body("half-closed") + b".", b"QUIT"]
        wire.writer.write(b"\r\n".join(batch) + b"\r\n")
        wire.writer.write_eof()
        assert [(await wire.reply())[0] for _ in range(5)] == [250, 250, 250, 354, 250]
        assert (await wire.reply())[0] == 221
        assert await wire.closed()
    finally:
        await wire.close()
    await lab.settle()
    assert (await mailbox_count(lab, ALICE)) == 1


async def mailbox_count(lab: Lab, address: str) -> int:
    status, doc = await api(lab, "GET", f"/api/v1/mailboxes/{address}")
    assert status == 200, doc
    return int(doc["message_count"])


@pytest.mark.lab(http=False)
async def test_stopping_the_lab_says_421_to_connected_clients(lab_factory: LabFactory) -> None:
    lab = await lab_factory.start()
    wire = await connect(lab)
    assert (await wire.command("EHLO client.example.net"))[0] == 250
    await lab_factory.stop(lab)
    assert await wire.reply() == (
        421, "4.3.2 EX2003-A.contoso.test Service shutting down, closing connection")
    assert await wire.closed()
    await wire.close()


# -- size -------------------------------------------------------------------------------------


async def _stream(wire: Wire, total: int, line: bytes) -> None:
    """Send ``total`` bytes of ``line`` repeated, in 64 KiB writes."""
    chunk = line * (65536 // len(line))
    sent = 0
    while sent < total:
        await wire.send(chunk)
        sent += len(chunk)


@pytest.mark.parametrize("line", [b"x" * 70 + b"\r\n", b"x" * 4096])
@pytest.mark.lab(defaults={"max_message_size": 65536})
async def test_a_message_over_size_is_refused_without_holding_it(lab: Lab, line: bytes) -> None:
    """6 MiB sent to a 64 KiB limit: 552 (or 500 for one endless line), and the
    endpoint's memory never grows by anything near the message."""
    before = (await audit(lab))["accepted"]
    async with session(lab) as wire:
        assert (await wire.command(f"MAIL FROM:<{SENDER}>"))[0] == 250
        assert (await wire.command(f"RCPT TO:<{ALICE}>"))[0] == 250
        assert (await wire.command("DATA"))[0] == 354
        tracemalloc.start()
        try:
            await _stream(wire, 6 * 1024 * 1024, line)
            await wire.send(b"\r\n.\r\n")
            reply = await wire.reply()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        expected = replies.S552_TOO_BIG if line.endswith(b"\r\n") \
            else replies.S500_TEXT_LINE_TOO_LONG
        assert reply == expected
        assert peak < 2 * 1024 * 1024, f"peak {peak} bytes while reading 6 MiB"
        # The session goes on.
        queued(await transaction(wire, body("small")))
    await lab.settle()
    assert (await audit(lab))["accepted"] == before + 1


# -- idle clients -----------------------------------------------------------------------------


async def test_the_idle_timeout_defaults_to_five_minutes_of_real_time(lab: Lab) -> None:
    assert Defaults().smtp_idle_timeout_seconds == 300.0
    assert Defaults().smtp_max_connections == 200
    for endpoint in lab.endpoints.values():
        assert (endpoint.limits.idle_timeout, endpoint.limits.max_connections) == (300.0, 200)


IDLE = (421, "4.4.2 EX2003-A.contoso.test Idle timeout, closing connection")


@pytest.mark.lab(defaults={"smtp_idle_timeout_seconds": 0.5})
async def test_an_idle_client_gets_421_and_is_closed(lab: Lab) -> None:
    before = (await audit(lab))["accepted"]
    # Silent after the greeting.
    wire = await connect(lab)
    assert await wire.reply() == IDLE
    assert await wire.closed()
    await wire.close()
    # Silent in the middle of DATA: nothing is kept.
    async with session(lab) as wire:
        assert (await wire.command(f"MAIL FROM:<{SENDER}>"))[0] == 250
        assert (await wire.command(f"RCPT TO:<{ALICE}>"))[0] == 250
        assert (await wire.command("DATA"))[0] == 354
        await wire.send(b"Subject: half a message\r\n")
        assert await wire.reply() == IDLE
        assert await wire.closed()
    await assert_nothing_stored(lab, before)
    metrics = await scrape(lab)
    assert sample(metrics, "mailflow_smtp_rejections_total", server=SERVER,
                  code="421") == 2.0


@pytest.mark.lab(defaults={"smtp_idle_timeout_seconds": 0.5})
async def test_the_smtp_hop_survives_the_peer_closing_an_idle_connection(lab: Lab) -> None:
    carol = "carol@contoso.test"
    assert QUEUED.fullmatch(await send(lab, SERVER, carol, subject="one"))
    await lab.settle()
    # EX2003-B drops the link's idle connection; wait for it (a protocol timeout in
    # real time, not the lab's schedule).
    peer = lab.endpoints["EX2003-B"]
    async with asyncio.timeout(WAIT):
        while peer.connections:
            await asyncio.sleep(0.05)
    assert QUEUED.fullmatch(await send(lab, SERVER, carol, subject="two"))
    await lab.settle()
    if (await queued_anywhere(lab)):  # the link raced the close: one link retry
        await lab.advance(lab.scenario.defaults.link_retry_seconds)
    assert await queued_anywhere(lab) == {}
    status, mailbox = await api(lab, "GET", f"/api/v1/mailboxes/{carol}")
    assert status == 200 and mailbox["message_count"] == 2


# -- connection limit -------------------------------------------------------------------------

TOO_MANY = (421, "4.3.2 EX2003-A.contoso.test Too many connections, try again later")


@pytest.mark.lab(defaults={"smtp_max_connections": 3})
async def test_connections_over_the_limit_get_421_4_3_2(lab: Lab) -> None:
    wires = [await connect(lab) for _ in range(3)]
    try:
        extra = await connect(lab, greet=False)
        assert await extra.reply() == TOO_MANY
        assert await extra.closed()
        await extra.close()
        # The three still work, and when one leaves, a new client gets in.
        assert (await wires[0].command("EHLO client.example.net"))[0] == 250
        assert (await wires[1].command("QUIT"))[0] == 221
        assert await wires[1].closed()
        newcomer = await connect(lab)
        wires.append(newcomer)
        assert (await newcomer.command("NOOP"))[0] == 250
        # Other endpoints have their own limit.
        assert QUEUED.fullmatch(await send(lab, "EX2003-B", "carol@contoso.test"))
    finally:
        for wire in wires:
            await wire.close()
    metrics = await scrape(lab)
    assert sample(metrics, "mailflow_smtp_rejections_total", server=SERVER,
                  code="421") == 1.0


async def test_the_201st_connection_is_refused_by_default(lab: Lab) -> None:
    wires = [await connect(lab, greet=False) for _ in range(200)]
    try:
        for wire in wires:
            assert (await wire.reply())[0] == 220
        extra = await connect(lab, greet=False)
        assert await extra.reply() == TOO_MANY
        assert await extra.closed()
        await extra.close()
    finally:
        for wire in wires:
            await wire.close()
    await assert_still_serves(lab)


# -- relaying ---------------------------------------------------------------------------------


@pytest.mark.lab(relay_networks=("127.0.0.0/8",))
async def test_relay_networks_let_listed_clients_relay(lab: Lab) -> None:
    async with session(lab) as wire:
        assert (await wire.command(f"MAIL FROM:<{SENDER}>"))[0] == 250
        assert (await wire.command("RCPT TO:<someone@example.org>"))[0] == 250
        assert (await wire.command(f"RCPT TO:<{ALICE}>"))[0] == 250
        # Relaying does not make unknown local users valid.
        assert (await wire.command("RCPT TO:<nobody@contoso.test>"))[0] == 550
        assert (await wire.command("DATA"))[0] == 354
        await wire.send(body("relayed") + b".\r\n")
        message_id = queued(await wire.reply())
    await lab.settle()
    _, doc = await api(lab, "GET", f"/api/v1/messages/{message_id}")
    assert sorted((r["rcpt"], r["state"]) for r in doc["recipients"]) == [
        (ALICE, "delivered"), ("someone@example.org", "unreachable")]
    # The lab has no way out: relayed mail waits in "unreachable", as in Exchange.
    assert await queued_anywhere(lab) == {(SERVER, "unreachable"): 1}
    status, rows = await api(lab, "GET", f"/api/v1/queues/{SERVER}/unreachable/messages")
    assert status == 200, rows
    assert "no connector to the external domain example.org" in str(rows)
    assert (await audit(lab))["accepted"] == 2


@pytest.mark.lab(relay_networks=("10.0.0.0/8", "::1/128"))
async def test_relay_networks_that_do_not_list_the_client_refuse(lab: Lab) -> None:
    async with session(lab) as wire:
        assert (await wire.command(f"MAIL FROM:<{SENDER}>"))[0] == 250
        assert await wire.command("RCPT TO:<someone@example.org>") == (
            550, "5.7.1 Unable to relay")


@pytest.mark.parametrize(("networks", "peer", "allowed"), [
    ((), "127.0.0.1", False),
    (("127.0.0.0/8",), "127.0.0.1", True),
    (("127.0.0.0/8",), "127.1.2.3", True),
    (("127.0.0.0/8",), "::ffff:127.0.0.1", True),
    (("127.0.0.0/8",), "128.0.0.1", False),
    (("127.0.0.0/8",), "::1", False),
    (("::1/128",), "::1", True),
    (("fe80::/10",), "fe80::1%eth0", True),
    (("192.0.2.7/32",), "192.0.2.7", True),
    (("127.0.0.0/8",), "unknown", False),
    (("127.0.0.0/8",), "", False),
])
def test_may_relay(networks: tuple[str, ...], peer: str, allowed: bool) -> None:
    scenario = dataclasses.replace(scenarios.load("mixed-2003"), relay_networks=networks)
    assert categorizer.may_relay(scenario, peer) is allowed
    verdict = categorizer.check_recipient(scenario, frozenset(), "x@example.org", peer)
    assert verdict is (categorizer.Verdict.OK if allowed else categorizer.Verdict.RELAY_DENIED)


MINIMAL = """
name = "relay"
{relay}
[organization]
name = "Contoso"
domains = ["contoso.test"]
[[sites]]
name = "HQ"
[[servers]]
name = "EX2003-A"
version = "2003"
site = "HQ"
"""


def test_relay_networks_are_parsed_and_checked() -> None:
    parse = scenarios.parse
    assert parse(MINIMAL.format(relay=""), "t.toml").relay_networks == ()
    scenario = parse(MINIMAL.format(relay='relay_networks = ["127.0.0.0/8", "192.0.2.7",'
                                          ' "2001:DB8::/32", "127.0.0.0/8"]'), "t.toml")
    assert scenario.relay_networks == ("127.0.0.0/8", "192.0.2.7/32", "2001:db8::/32")
    for bad, problem in [('["10.1.2.3/8"]', "has host bits set"),
                         ('["localhost"]', "is not a network"),
                         ('["0.0.0.0/33"]', "is not a network")]:
        with pytest.raises(scenarios.ScenarioError) as error:
            parse(MINIMAL.format(relay=f"relay_networks = {bad}"), "t.toml")
        assert error.value.key == "relay_networks[0]" and problem in error.value.problem
    with pytest.raises(scenarios.ScenarioError) as error:
        parse(MINIMAL.format(relay='relay_networks = "127.0.0.0/8"'), "t.toml")
    assert error.value.key == "relay_networks"


def test_smtp_defaults_are_read_from_the_scenario() -> None:
    text = MINIMAL.format(relay="") + """
[defaults]
smtp_idle_timeout_seconds = 30
smtp_max_connections = 10
"""
    defaults = scenarios.parse(text, "t.toml").defaults
    assert (defaults.smtp_idle_timeout_seconds, defaults.smtp_max_connections) == (30.0, 10)
    with pytest.raises(scenarios.ScenarioError):
        scenarios.parse(text.replace("= 10", "= 0"), "t.toml")


# -- generated sessions -----------------------------------------------------------------------


def _pattern(reply: str) -> re.Pattern[str]:
    text = re.escape(reply)
    for name, value in (("queue_id", "[0-9A-F]+"), ("hostname", r"[\w.-]+"),
                        ("banner", ".+"), ("peer", r"[0-9a-f.:]+")):
        text = text.replace(re.escape("{" + name + "}"), value)
    return re.compile(text)


NAMED = {name: _pattern(f"{value.code} {value.text}") for name, value in vars(replies).items()
         if isinstance(value, replies.Reply)}


def known_reply(code: int, text: str) -> str:
    """The name of the reply, or fail: every reply must be one of mailflow.smtp.replies."""
    first = f"{code} {text.splitlines()[0]}"
    for name, pattern in NAMED.items():
        if pattern.fullmatch(first):
            return name
    raise AssertionError(f"reply not named in mailflow.smtp.replies: {first!r}")


ADDRESSES = {
    # address as sent -> the mailbox it reaches (None: refused)
    "alice@contoso.test": "alice@contoso.test",
    "ALICE@Contoso.Test": "alice@contoso.test",
    "bob@contoso.test": "bob@contoso.test",
    "carol@contoso.test": "carol@contoso.test",  # over the SMTP hop to EX2003-B
    "user001@contoso.test": "user001@contoso.test",
    "nobody@contoso.test": None,
    "someone@example.org": None,
    "a..b@contoso.test": None,
    "=?utf-8?q?alice?=@contoso.test": None,  # email's parser would decode it to alice
    "alice@contoso.test> (comment)": None,
    "zoë@contoso.test": None,
    "": None,
}
# Valid choices come several times over, so that most transactions get through.
SENDERS = ["x@example.net"] * 4 + ["", "jörg@example.net", "a..b@example.net", "postmaster"]
MAIL_PARAMS = [""] * 4 + [" BODY=8BITMIME", " BODY=7BIT", " SMTPUTF8", " SIZE=100",
                          " SIZE=99999999999", " BODY=8BITMIME SMTPUTF8", " FOO=BAR", " BODY="]
GOOD_LINES = [b"Subject: generated", b"", b"plain text", b".leading dot", b"..two dots", b".",
              b"y" * 998, b"tab\there", b"bare cr \r inside", b"nul \x00 inside"]
ODD_LINES = ["8-bit: Grüße".encode(), b"y" * 999, b"bare lf \n inside", b"\xff\xfe not utf-8"]


@st.composite
def data_step(draw: st.DrawFn) -> tuple[str, bytes]:
    lines = draw(st.lists(st.sampled_from(GOOD_LINES), max_size=6))
    if draw(st.booleans()):  # half the messages carry one line that may be refused
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(ODD_LINES)))
    content = b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n"
                       for line in lines)
    return "DATA", content


MAIL_STEP = st.builds(lambda s, p: ("LINE", f"MAIL FROM:<{s}>{p}".encode()),
                      st.sampled_from(SENDERS), st.sampled_from(MAIL_PARAMS))
RCPT_STEP = st.sampled_from(sorted(ADDRESSES)).map(lambda a: ("LINE", f"RCPT TO:<{a}>".encode()))
STEPS = st.one_of(
    st.sampled_from(["EHLO client.example.net", "HELO client.example.net", "EHLO", "RSET",
                     "NOOP", "QUIT", "VRFY alice", "HELP", "EXPN staff", "DATA", "RSET x",
                     "MAIL", "MAIL FROM:", "RCPT TO:<>", "EHLO evil\rX-Injected: yes",
                     "RCPT TO:alice@contoso.test"]).map(lambda c: ("LINE", c.encode())),
    MAIL_STEP,
    RCPT_STEP,
    data_step(),
    st.binary(max_size=40).map(lambda b: ("LINE", b.replace(b"\n", b""))),
    st.binary(max_size=20).map(lambda b: ("RAW", b.replace(b"\n", b"") + b"\n")),
    st.sampled_from([505, 506, 1200, 70_000]).map(lambda n: ("LINE", b"NOOP " + b"x" * n)),
)
# Mostly well-formed transactions, with anything at all between and inside them.
GOOD_RCPT = st.sampled_from(["alice@contoso.test", "carol@contoso.test", "bob@contoso.test"]).map(
    lambda a: ("LINE", f"RCPT TO:<{a}>".encode()))
TRANSACTION = st.builds(lambda mail, rcpts, data: [mail, *rcpts, data], MAIL_STEP,
                        st.lists(st.one_of(GOOD_RCPT, RCPT_STEP), min_size=1, max_size=3),
                        data_step())
SESSIONS = st.builds(
    lambda greeting, parts: greeting + [step for part in parts for step in part],
    st.sampled_from([[("LINE", b"EHLO client.example.net")]] * 3
                    + [[("LINE", b"HELO client.example.net")], []]),
    st.lists(st.one_of(TRANSACTION, STEPS.map(lambda step: [step])), max_size=6),
)
# Sessions every run plays: an accepted message and the refusals this file is about.
EHLO = ("LINE", b"EHLO client.example.net")
GOOD = [("LINE", b"MAIL FROM:<x@example.net>"), ("LINE", b"RCPT TO:<alice@contoso.test>"),
        ("LINE", b"RCPT TO:<carol@contoso.test>"), ("DATA", b"Subject: good\r\n\r\nHi\r\n")]
EXAMPLES = [
    [EHLO, *GOOD, ("LINE", b"\xff\x00junk"), *GOOD],
    [EHLO, *GOOD[:3], ("DATA", b"Subject: bare\r\n\r\nHi\n.\nQUIT\r\n")],
    [("LINE", b"HELO client.example.net"), *GOOD[:3], ("DATA", "Grüße\r\n".encode())],
    [EHLO, *GOOD[:3], ("DATA", b"y" * 1200 + b"\r\n"), ("LINE", b"NOOP " + b"x" * 600)],
    [EHLO, ("LINE", b"MAIL FROM:<j\xc3\xb6rg@example.net> SMTPUTF8"), *GOOD[1:]],
]


@dataclasses.dataclass
class Tally:
    """What the generated sessions should have left in the lab."""

    pairs: int = 0  # recipients of messages answered 250 after DATA
    messages: int = 0
    refused: int = 0  # messages refused after DATA
    closes: int = 0  # sessions the server ended


async def play(lab: Lab, steps: list[tuple[str, bytes]], tally: Tally) -> None:
    """Run one generated session and check every reply; count what was accepted."""
    wire = await connect(lab)
    rcpts: set[str] = set()
    errors = 0
    closing = {"S221_BYE", "S421_TOO_MANY_ERRORS", "S421_TOO_MANY_UNKNOWN", "S521_BARE_LF"}

    async def answer() -> tuple[int, str, str]:
        nonlocal errors
        code, text = await wire.reply()
        name = known_reply(code, text)
        assert not name.startswith("S451"), (code, text)  # no internal error, ever
        if 500 <= code <= 504:
            errors += 1
        return code, text, name

    try:
        for kind, payload in steps:
            try:
                if kind == "DATA":
                    await wire.send(b"DATA\r\n")
                    code, _, name = await answer()
                    if code == 354:
                        await wire.send(payload + b".\r\n")
                        code, _, name = await answer()
                        if code == 250:
                            tally.pairs += len(rcpts)
                            tally.messages += 1
                        else:
                            tally.refused += 1
                        rcpts.clear()
                else:
                    await wire.send(payload + (b"\r\n" if kind == "LINE" else b""))
                    code, _, name = await answer()
                    command = payload[:4].upper()
                    if code == 250 and command == b"RCPT":
                        reached = ADDRESSES[payload.decode()[9:-1]]
                        assert reached is not None, payload
                        rcpts.add(reached)
                    elif code == 250 and command in (b"RSET", b"HELO", b"EHLO"):
                        rcpts.clear()
            except ConnectionError:
                # The server hung up while we were still sending (bare LF, error limit).
                code, _, name = await answer()
            if errors >= 20 and name not in closing:
                code, _, name = await answer()
                assert name == "S421_TOO_MANY_ERRORS"
            if name in closing:
                assert await wire.closed(), name
                tally.closes += 1
                return
        assert (await wire.command("QUIT"))[0] == 221
        assert await wire.closed()
    finally:
        await wire.close()


async def check_lab(lab: Lab, tally: Tally) -> None:
    # The endpoint still serves a normal client.
    assert QUEUED.fullmatch(await send(lab, SERVER, ALICE, subject="between sessions"))
    tally.pairs += 1
    await lab.settle()
    status, _ = await api(lab, "GET", "/healthz")
    assert status == 200
    report = await audit(lab)
    assert report["accepted"] == tally.pairs, (report, tally)
    # Nothing but accepted mail is anywhere, and all of it has been delivered.
    assert await queued_anywhere(lab) == {}


def test_generated_sessions_leave_the_lab_healthy_and_consistent(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    lab = build_lab(tmp_path / "data")  # hypothesis runs its own loop: no async fixture
    loop.run_until_complete(lab.start())
    tally = Tally()
    try:
        @settings(max_examples=50, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(SESSIONS)
        def session_is_handled(steps: list[tuple[str, bytes]]) -> None:
            loop.run_until_complete(play(lab, steps, tally))
            loop.run_until_complete(check_lab(lab, tally))

        for steps in EXAMPLES:
            session_is_handled = example(steps)(session_is_handled)
        session_is_handled()
        # The fixed examples alone accept three messages and refuse three.
        assert tally.messages >= 3 and tally.refused >= 2 and tally.closes >= 1, tally
        # After all of it, a normal client still gets mail delivered.
        loop.run_until_complete(assert_still_serves(lab))
    finally:
        loop.run_until_complete(lab.stop())
        loop.close()
