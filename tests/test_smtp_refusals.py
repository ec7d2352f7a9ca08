"""What an endpoint refuses, over real sockets, and that a refusal leaves nothing behind.

The default lab: domain contoso.test, alice@contoso.test on EX2003-A. Malformed
commands go over a raw stream, since aiosmtplib will not send them.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from mailflow.runtime.lab import Lab
from tests.helpers import api, queue_id, sample, scrape, send
from tests.smtpwire import Wire, connect

SERVER = "EX2003-A"
ALICE = "alice@contoso.test"
SENDER = "x@example.net"
QUEUED = re.compile(r"2\.6\.0 <(?P<id>[0-9A-F]+)> Queued mail for delivery")


@asynccontextmanager
async def session(lab: Lab, server: str = SERVER) -> AsyncIterator[Wire]:
    """A session past its greeting and EHLO; QUIT on the way out."""
    smtp = await connect(lab, server)
    try:
        assert (await smtp.command("EHLO client.example.net"))[0] == 250
        yield smtp
        assert (await smtp.command("QUIT"))[0] == 221
    finally:
        await smtp.close()


def message(subject: str, size: int = 0) -> bytes:
    """A message of exactly ``size`` bytes when ``size`` is given (big enough for headers)."""
    head = f"From: <{SENDER}>\r\nTo: <{ALICE}>\r\nSubject: {subject}\r\n\r\n".encode()
    if not size:
        return head + b"Hello.\r\n"
    body = size - len(head)
    assert body >= 2
    lines, rest = divmod(body, 72)
    content = head + (b"x" * 70 + b"\r\n") * lines
    if rest == 1:  # one byte cannot hold a CRLF line: widen the last full line instead
        assert lines, "too small"
        content = content[:-2] + b"x\r\n"
    elif rest:
        content += b"x" * (rest - 2) + b"\r\n"
    assert len(content) == size
    return content


def queued(code: int, text: str) -> str:
    """The queue id a 250 reply to DATA names."""
    match = QUEUED.fullmatch(text)
    assert code == 250 and match is not None, (code, text)
    return match["id"]


async def accepted_count(lab: Lab) -> int:
    status, report = await api(lab, "GET", "/api/v1/audit")
    assert status == 200 and report["clean"], report
    return int(report["accepted"])


async def assert_nothing_stored(lab: Lab, accepted_before: int) -> None:
    """The refusal added no pair and left every queue empty."""
    await lab.settle()
    assert await accepted_count(lab) == accepted_before
    status, rows = await api(lab, "GET", "/api/v1/queues")
    assert status == 200 and rows
    assert {(r["server"], r["queue"]): r["message_count"] for r in rows if r["message_count"]} \
        == {}


async def assert_still_serves_alice(lab: Lab) -> None:
    """After the refusal the endpoint accepts and delivers a normal message."""
    before = await accepted_count(lab)
    _, mailbox = await api(lab, "GET", f"/api/v1/mailboxes/{ALICE}")
    reply = await send(lab, SERVER, ALICE, subject="after the refusal")
    assert QUEUED.fullmatch(reply), reply
    await lab.settle()
    assert await accepted_count(lab) == before + 1
    _, after = await api(lab, "GET", f"/api/v1/mailboxes/{ALICE}")
    assert after["message_count"] == mailbox["message_count"] + 1
    _, trace = await api(lab, "GET", f"/api/v1/messages/{queue_id(reply)}")
    assert [r["state"] for r in trace["recipients"]] == ["delivered"]


# -- recipients ---------------------------------------------------------------------------------


@pytest.mark.parametrize("rcpt", [
    "someone@example.org",
    "someone@contoso.test.example.org",
    "someone@evilcontoso.test",
    "SOMEONE@EXAMPLE.ORG",
])
async def test_relay_to_a_foreign_domain_is_refused_even_from_loopback(lab: Lab, rcpt: str) -> None:
    before = await accepted_count(lab)
    async with session(lab) as smtp:
        peer = smtp.writer.get_extra_info("sockname")[0]
        assert peer == "127.0.0.1"  # the client is on loopback, and still may not relay
        assert (await smtp.command(f"MAIL FROM:<{SENDER}>"))[0] == 250
        code, text = await smtp.command(f"RCPT TO:<{rcpt}>")
        assert code == 550 and text.startswith("5.7.1 "), (code, text)
        assert (await smtp.command("DATA"))[0] == 503  # no recipient was taken
    await assert_nothing_stored(lab, before)
    await assert_still_serves_alice(lab)


async def test_unknown_local_user_is_refused(lab: Lab) -> None:
    before = await accepted_count(lab)
    async with session(lab) as smtp:
        assert (await smtp.command(f"MAIL FROM:<{SENDER}>"))[0] == 250
        code, text = await smtp.command("RCPT TO:<nobody@contoso.test>")
        assert code == 550 and text.startswith("5.1.1 "), (code, text)
    await assert_nothing_stored(lab, before)
    await assert_still_serves_alice(lab)


@pytest.mark.parametrize(
    "rcpt", ["<a..b@contoso.test>", "<@@>", "<alice@>", "<.alice@contoso.test>"]
)
async def test_syntactically_bad_recipient_is_refused(lab: Lab, rcpt: str) -> None:
    before = await accepted_count(lab)
    async with session(lab) as smtp:
        assert (await smtp.command(f"MAIL FROM:<{SENDER}>"))[0] == 250
        code, text = await smtp.command(f"RCPT TO:{rcpt}")
        assert code in (553, 501), (code, text)
        # The session goes on: a good recipient after the bad one is taken.
        assert (await smtp.command(f"RCPT TO:<{ALICE}>"))[0] == 250
        assert (await smtp.command("RSET"))[0] == 250
    await assert_nothing_stored(lab, before)
    await assert_still_serves_alice(lab)


# -- senders ------------------------------------------------------------------------------------


@pytest.mark.parametrize("sender", ["<a..b@example.net>", "<@@>", "<x@>"])
async def test_syntactically_bad_sender_is_refused(lab: Lab, sender: str) -> None:
    before = await accepted_count(lab)
    async with session(lab) as smtp:
        code, text = await smtp.command(f"MAIL FROM:{sender}")
        assert code in (553, 501), (code, text)
        assert (await smtp.command(f"RCPT TO:<{ALICE}>"))[0] == 503  # no transaction began
    await assert_nothing_stored(lab, before)
    await assert_still_serves_alice(lab)


async def test_null_sender_is_accepted(lab: Lab) -> None:
    before = await accepted_count(lab)
    async with session(lab) as smtp:
        assert await smtp.command("MAIL FROM:<>") == (250, "2.1.0 Sender OK")
        assert (await smtp.command(f"RCPT TO:<{ALICE}>"))[0] == 250
        code, text = await smtp.data(message("bounce"))
    message_id = queued(code, text)
    await lab.settle()
    assert await accepted_count(lab) == before + 1
    _, doc = await api(lab, "GET", f"/api/v1/messages/{message_id}")
    assert doc["mail_from"] == ""
    assert [(r["rcpt"], r["state"]) for r in doc["recipients"]] == [(ALICE, "delivered")]


# -- size ---------------------------------------------------------------------------------------


async def test_declared_size_over_the_limit_is_refused_at_mail(lab: Lab) -> None:
    limit = lab.scenario.defaults.max_message_size
    assert limit == 10 * 1024 * 1024
    before = await accepted_count(lab)
    smtp = await connect(lab, SERVER)
    try:
        code, ehlo = await smtp.command("EHLO client.example.net")
        assert code == 250 and f"SIZE {limit}" in ehlo.splitlines()
        code, text = await smtp.command(f"MAIL FROM:<{SENDER}> SIZE={limit + 1}")
        assert code == 552, (code, text)
        assert (await smtp.command(f"RCPT TO:<{ALICE}>"))[0] == 503
        # Exactly the limit is allowed.
        assert (await smtp.command(f"MAIL FROM:<{SENDER}> SIZE={limit}"))[0] == 250
        assert (await smtp.command("RSET"))[0] == 250
    finally:
        await smtp.close()
    await assert_nothing_stored(lab, before)
    await assert_still_serves_alice(lab)


@pytest.mark.lab(defaults={"max_message_size": 2048})
async def test_data_over_the_limit_is_refused(lab: Lab) -> None:
    limit = lab.scenario.defaults.max_message_size
    assert limit == 2048
    before = await accepted_count(lab)
    async with session(lab) as smtp:
        # No SIZE declared: the server only learns the size while reading DATA.
        assert (await smtp.command(f"MAIL FROM:<{SENDER}>"))[0] == 250
        assert (await smtp.command(f"RCPT TO:<{ALICE}>"))[0] == 250
        code, text = await smtp.data(message("too big", limit + 1))
        assert code == 552, (code, text)
        await assert_nothing_stored(lab, before)

        # The same session goes on, and a message of exactly the limit is taken.
        assert (await smtp.command(f"MAIL FROM:<{SENDER}>"))[0] == 250
        assert (await smtp.command(f"RCPT TO:<{ALICE}>"))[0] == 250
        code, text = await smtp.data(message("just fits", limit))
        queued(code, text)
    await lab.settle()
    assert await accepted_count(lab) == before + 1
    _, mailbox = await api(lab, "GET", f"/api/v1/mailboxes/{ALICE}")
    assert mailbox["message_count"] == 1
    await assert_still_serves_alice(lab)


# -- recipients per message, junk ---------------------------------------------------------------


async def test_the_101st_recipient_is_refused_and_the_first_100_get_the_message(lab: Lab) -> None:
    assert lab.scenario.defaults.max_recipients == 100
    users = [f"user{n:03d}@contoso.test" for n in range(1, 101)]
    before = await accepted_count(lab)
    async with session(lab) as smtp:
        assert (await smtp.command(f"MAIL FROM:<{SENDER}>"))[0] == 250
        for user in users:
            assert (await smtp.command(f"RCPT TO:<{user}>"))[0] == 250, user
        code, text = await smtp.command(f"RCPT TO:<{ALICE}>")
        assert code == 452 and text.startswith("4.5.3 "), (code, text)
        code, text = await smtp.data(message("to a hundred"))
    message_id = queued(code, text)
    await lab.settle()
    assert await accepted_count(lab) == before + 100
    _, doc = await api(lab, "GET", f"/api/v1/messages/{message_id}")
    assert sorted(r["rcpt"] for r in doc["recipients"]) == users
    assert {r["state"] for r in doc["recipients"]} == {"delivered"}
    _, alice = await api(lab, "GET", f"/api/v1/mailboxes/{ALICE}")
    assert alice["message_count"] == 0  # the refused 101st did not get it


async def test_junk_command_is_refused(lab: Lab) -> None:
    before = await accepted_count(lab)
    async with session(lab) as smtp:
        code, text = await smtp.command("XYZZY")
        assert code == 500, (code, text)
        assert (await smtp.command("NOOP"))[0] == 250
    await assert_nothing_stored(lab, before)
    await assert_still_serves_alice(lab)


# -- metrics and the queue id -------------------------------------------------------------------


async def test_refusals_are_counted_by_code(lab: Lab) -> None:
    def rejections(text: str, code: str) -> float:
        return sample(text, "mailflow_smtp_rejections_total", server=SERVER, code=code) or 0.0

    metrics = await scrape(lab)
    before_550, before_553 = rejections(metrics, "550"), rejections(metrics, "553")
    async with session(lab) as smtp:
        assert (await smtp.command(f"MAIL FROM:<{SENDER}>"))[0] == 250
        for rcpt in ("someone@example.org", "nobody@contoso.test", "other@example.org"):
            assert (await smtp.command(f"RCPT TO:<{rcpt}>"))[0] == 550
        # An RFC 5321 path, but not a valid mailbox (a label opening with "-").
        assert (await smtp.command("RCPT TO:<alice@-contoso.test>"))[0] == 553
        assert (await smtp.command(f"RCPT TO:<{ALICE}>"))[0] == 250
    metrics = await scrape(lab)
    assert rejections(metrics, "550") - before_550 == 3
    assert rejections(metrics, "553") - before_553 == 1
    # Only the server that refused counts them.
    assert (sample(metrics, "mailflow_smtp_rejections_total", server="EX2003-B", code="550")
            or 0.0) == 0.0


async def test_data_reply_names_the_queue_id(lab: Lab) -> None:
    reply = await send(lab, SERVER, ALICE, subject="find me")
    queued = QUEUED.fullmatch(reply)
    assert queued is not None, reply
    assert queue_id(reply) == queued["id"]
    status, doc = await api(lab, "GET", f"/api/v1/messages/{queued['id']}")
    assert status == 200
    assert (doc["id"], doc["subject"], doc["accepted_server"]) == (queued["id"], "find me", SERVER)
    assert [r["rcpt"] for r in doc["recipients"]] == [ALICE]
