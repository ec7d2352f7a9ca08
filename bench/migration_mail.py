"""Background mail of the migration benchmark (issue 22): who gets mail in a step, and sending it.

In: the mailboxes, the arrival rate (messages per mailbox per simulated hour), the share of
that mail actually sent (``sample``), the mailboxes being moved (always sent their full
share, so the deferred-delivery flow sees what it would see at full size), and the SMTP
port of every server. Out: the recipients due in a step of simulated time, and those
messages sent over real SMTP (aiosmtplib) to each recipient's home server: one message
per recipient, one session per server with mail, ``sessions`` servers at a time; the
counts of what was sent (250 after DATA) and refused.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Collection
from dataclasses import dataclass, field

import aiosmtplib

SENDER = "migration-bench@example.net"


@dataclass
class Sent:
    """What the SMTP sessions of one or more steps did."""

    sent: int = 0
    refused: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def add(self, other: Sent) -> None:
        self.sent += other.sent
        self.refused += other.refused
        self.seconds += other.seconds
        self.errors += other.errors[: max(0, 5 - len(self.errors))]


class Background:
    """Arrivals at ``rate`` per mailbox per simulated hour: of the mailboxes not being moved
    a ``sample`` share is sent, of those being moved all; fractions carry to the next step,
    so the counts sent add up to the rate over the run."""

    def __init__(self, rng: random.Random, mailboxes: int, rate: float, sample: float) -> None:
        self.rng = rng
        self.mailboxes = mailboxes
        self.rate = rate
        self.sample = sample
        self._carry_rest = 0.0
        self._carry_moving = 0.0
        self.arrived = 0.0  # the arrivals at full rate, sent or not

    def due(self, seconds: float, moving: Collection[int]) -> list[int]:
        """The mailboxes (indices) that get one message each in the next ``seconds``."""
        per_box = self.rate * seconds / 3600.0
        self.arrived += per_box * self.mailboxes
        self._carry_rest += per_box * (self.mailboxes - len(moving)) * self.sample
        self._carry_moving += per_box * len(moving)
        rest, moving_n = int(self._carry_rest), int(self._carry_moving)
        self._carry_rest -= rest
        self._carry_moving -= moving_n
        picked = [self.rng.randrange(self.mailboxes) for _ in range(rest)]
        if moving_n and moving:
            pool = list(moving)
            picked += [self.rng.choice(pool) for _ in range(moving_n)]
        return picked


def message(address: str, n: int) -> bytes:
    """A short message (about 400 bytes) to ``address``, numbered ``n``."""
    return (f"From: <{SENDER}>\r\nTo: <{address}>\r\nSubject: background {n}\r\n"
            f"Message-Id: <mig.{n}.{time.time_ns()}@client.example.net>\r\n\r\n"
            + "Background mail while mailboxes move (bench/migration.py).\r\n" * 5).encode()


async def send(by_port: dict[int, list[str]], sessions: int, first: int = 0) -> Sent:
    """One message to every address, each over a session to its port; ``first`` numbers
    the messages. Refusals are counted, not raised."""
    out = Sent()
    work = list(by_port.items())
    t0 = time.perf_counter()
    counter = first

    async def worker() -> None:
        nonlocal counter
        while work:
            port, addresses = work.pop()
            client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False,
                                     local_hostname="client.example.net", timeout=120)
            handled = 0  # addresses whose outcome is counted
            try:
                await client.connect()
                for address in addresses:
                    counter += 1
                    try:
                        await client.sendmail(SENDER, [address], message(address, counter))
                        out.sent += 1
                        handled += 1
                    except aiosmtplib.SMTPResponseException as exc:
                        out.refused += 1
                        handled += 1
                        if len(out.errors) < 5:
                            out.errors.append(f"{port} {address}: {exc.code} {exc.message}")
                await client.quit()
            except (aiosmtplib.SMTPException, OSError) as exc:
                out.refused += len(addresses) - handled  # the one in hand and the rest
                if len(out.errors) < 5:
                    out.errors.append(f"{port}: {type(exc).__name__}: {exc}")
                client.close()

    await asyncio.gather(*(worker() for _ in range(max(1, min(sessions, len(work))))))
    out.seconds = time.perf_counter() - t0
    return out
