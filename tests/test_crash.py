"""kill -9 the lab while it accepts, releases and relays: every 250 is delivered exactly once.

The lab runs as its own process with a stopped clock (the test advances it).
Eight SMTP clients send 1,200 messages; the lab is killed three times: while
accepting, right as a completed move releases its deferred mail, and while
that mail crosses the SMTP hop to another server. After each kill it is
restarted on the same data directory.
"""

from __future__ import annotations

import asyncio
import itertools

import aiosmtplib

from tests.process import LabProcess, call

CLIENTS = 8
MESSAGES = 1200
# alice's move is held: her mail is deferred on EX2003-A, then relayed to EX2003-B.
# bob's move completes by itself: his deferred mail is released on the clock.
# carol lives on EX2003-B: her mail crosses the SMTP hop at once.
RECIPIENTS = ["alice@contoso.test", "bob@contoso.test", "carol@contoso.test",
              "user001@contoso.test"]


class Senders:
    """Eight clients sending through EX2003-A; a refused or broken send is simply retried."""

    def __init__(self, lab: LabProcess) -> None:
        self.lab = lab
        self.acked: dict[str, str] = {}  # queue id from the 250 -> recipient
        self.up = asyncio.Event()
        self.up.set()
        self.numbers = itertools.count()

    async def run_client(self, quota: int) -> None:
        while quota > 0:
            await self.up.wait()
            try:
                async with aiosmtplib.SMTP(hostname="127.0.0.1", port=self.lab.port("EX2003-A"),
                                           start_tls=False, local_hostname="crash.test",
                                           timeout=30) as smtp:
                    while quota > 0:
                        n = next(self.numbers)
                        rcpt = RECIPIENTS[n % len(RECIPIENTS)]
                        body = (f"From: <t@example.net>\r\nTo: <{rcpt}>\r\nSubject: crash {n}"
                                f"\r\nMessage-ID: <crash.{n}@example.net>\r\n\r\nbody {n}\r\n")
                        _, reply = await smtp.sendmail("t@example.net", [rcpt], body.encode())
                        self.acked[reply.split("<", 1)[1].split(">", 1)[0]] = rcpt
                        quota -= 1
            except (aiosmtplib.SMTPException, OSError):
                await asyncio.sleep(0.05)  # the lab is down: wait for `up` again

    async def wait_for(self, count: int) -> None:
        while len(self.acked) < count:
            await asyncio.sleep(0.01)


async def restart(lab: LabProcess, senders: Senders) -> None:
    await asyncio.to_thread(lab.start)
    senders.up.set()


async def crash(lab: LabProcess, senders: Senders) -> None:
    senders.up.clear()
    await asyncio.to_thread(lab.kill9)


async def test_no_acknowledged_message_is_lost_or_duplicated(lab_process: LabProcess) -> None:
    await _scenario(lab_process)


async def _scenario(lab: LabProcess) -> None:
    held = await call(lab, "POST", "/api/v1/moves",
                      {"mailbox": "alice@contoso.test", "target": "EX2003-B", "hold": True})
    clock = await call(lab, "GET", "/api/v1/clock")
    timed = await call(lab, "POST", "/api/v1/moves", {"mailbox": "bob@contoso.test",
                                                      "target": "EX2003-B",
                                                      "at": clock["now"] + 600})
    await call(lab, "POST", "/api/v1/clock/advance", {"seconds": 60})  # alice's copy: Held
    senders = Senders(lab)
    clients = [asyncio.create_task(senders.run_client(MESSAGES // CLIENTS))
               for _ in range(CLIENTS)]

    # 1. While accepting.
    await senders.wait_for(MESSAGES // 3)
    await crash(lab, senders)
    await restart(lab, senders)
    await asyncio.gather(*clients)
    assert len(senders.acked) >= MESSAGES

    # 2. While bob's move, completed by the clock, releases his deferred mail.
    await call(lab, "POST", "/api/v1/clock/advance", {"seconds": 600})  # bob's copy starts
    # The copy takes a minute plus the bytes; two minutes see it done.
    advance = asyncio.create_task(call(lab, "POST", "/api/v1/clock/advance", {"seconds": 120}))
    await _until_completed(lab, timed["id"])
    await crash(lab, senders)
    await asyncio.gather(advance, return_exceptions=True)
    await restart(lab, senders)

    # 3. While alice's released mail crosses the SMTP hop to EX2003-B.
    await call(lab, "POST", f"/api/v1/moves/{held['id']}/complete")
    await _until_relaying(lab)
    await crash(lab, senders)
    await restart(lab, senders)

    # Whatever a kill interrupted is retried by the link queue on the clock.
    for _ in range(10):
        await call(lab, "POST", "/api/v1/clock/advance", {"seconds": 600})
        queues = await call(lab, "GET", "/api/v1/queues")
        if not sum(q["message_count"] for q in queues):
            break
    report = await call(lab, "GET", "/api/v1/audit")
    assert report["clean"], report["problems"]
    assert report["queued"] == {}
    for queue_id, rcpt in senders.acked.items():
        message = await call(lab, "GET", f"/api/v1/messages/{queue_id}")
        assert [(r["rcpt"], r["state"]) for r in message["recipients"]] == [(rcpt, "delivered")]
    # Delivered exactly once: every Message-ID is unique, so a message that crossed the
    # hop twice would show up twice in its mailbox.
    delivered = 0
    for address in RECIPIENTS:
        items = await call(lab, "GET", f"/api/v1/mailboxes/{address}/messages?limit=100000")
        ids = [item["message_id"] for item in items]
        assert len(ids) == len(set(ids)), f"{address} holds a message twice"
        delivered += len(ids)
    assert delivered == report["delivered"] >= len(senders.acked)


async def _until_completed(lab: LabProcess, move_id: str) -> None:
    for _ in range(5000):
        if (await call(lab, "GET", f"/api/v1/moves/{move_id}"))["status"] == "Completed":
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"move {move_id} did not complete")


async def _until_relaying(lab: LabProcess) -> None:
    """Wait until released mail waits in the link queue to EX2003-B."""
    for _ in range(5000):
        queues = await call(lab, "GET", "/api/v1/queues")
        if any(q["message_count"] for q in queues if q["queue"] == "smtp:EX2003-B"):
            return
        await asyncio.sleep(0.001)
    raise AssertionError("released mail never reached the link queue")
