"""The transport's sender worker: a real process sending real SMTP to a real aiosmtpd."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from routing.sender import LinkError, Outgoing, Sender
from tests.helpers import RefuseNobody

SLOT = ("EX2003-A", "[smarthost]", 0)
HELO = "EX2003-A.contoso.test"


@dataclass
class Catcher(RefuseNobody):
    """Takes every message; with ``stall`` set, holds each DATA until it is cleared."""

    connections: int = 0
    subjects: list[str] = field(default_factory=list)
    stall: asyncio.Event | None = None
    stalled: asyncio.Event = field(default_factory=asyncio.Event)

    def protocol(self) -> SMTP:
        self.connections += 1
        return SMTP(self)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        if self.stall is not None:
            self.stalled.set()
            await self.stall.wait()
        self.subjects.append(envelope.content.split(b"Subject: ", 1)[1].split(b"\r\n")[0].decode())
        return "250 2.0.0 caught"


@pytest.fixture
async def catcher() -> AsyncIterator[tuple[Catcher, tuple[str, int]]]:
    caught = Catcher()
    server = await asyncio.get_running_loop().create_server(caught.protocol, "127.0.0.1", 0)
    yield caught, server.sockets[0].getsockname()[:2]
    server.close()
    await server.wait_closed()


def message(n: int, rcpts: list[str] | None = None) -> Outgoing:
    return ("tester@example.net", rcpts or ["friend@example.org"],
            f"Subject: m{n}\r\n\r\nbody {n}\r\n".encode())


async def test_jobs_share_one_connection_and_report_what_the_receiver_refused(
    catcher: tuple[Catcher, tuple[str, int]]
) -> None:
    caught, address = catcher
    sender = Sender()
    try:
        first = [r async for r in sender.send(
            SLOT, address, HELO, [message(0), message(1, ["nobody@example.org"])],
            smarthost=True, report=True)]
        second = [r async for r in sender.send(SLOT, address, HELO, [message(2)],
                                               smarthost=True, report=True)]
    finally:
        await sender.close()
    assert first == [(0, {}), (1, {"nobody@example.org": (550, "5.1.1 No such user here")})]
    assert second == [(0, {})]
    assert caught.subjects == ["m0", "m2"]
    assert caught.connections == 1
    assert sender.pid is None  # closed: the worker has exited


async def test_a_refusal_by_a_server_of_the_lab_breaks_the_connection_at_that_message(
    catcher: tuple[Catcher, tuple[str, int]]
) -> None:
    caught, address = catcher
    sender = Sender()
    outgoing = [message(0), message(1, ["nobody@example.org"]), message(2)]
    try:
        with pytest.raises(LinkError) as broke:
            async for _ in sender.send(SLOT, address, HELO, outgoing):
                pass
    finally:
        await sender.close()
    assert broke.value.index == 1
    assert "SMTPRecipientsRefused" in str(broke.value)
    assert caught.subjects == ["m0"]


async def test_a_peer_that_is_down_is_a_link_error_at_the_first_message() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        address = unused.getsockname()[:2]  # bound, never listening: connections are refused
        sender = Sender()
        try:
            with pytest.raises(LinkError) as broke:
                async for _ in sender.send(SLOT, address, HELO, [message(0)]):
                    pass
        finally:
            await sender.close()
    assert broke.value.index == 0
    assert "SMTPConnectError" in str(broke.value)


async def test_a_worker_that_dies_fails_its_jobs_and_the_next_job_starts_another(
    catcher: tuple[Catcher, tuple[str, int]]
) -> None:
    caught, address = catcher
    caught.stall = asyncio.Event()
    sender = Sender()
    try:
        first = await sender.start()
        job = asyncio.ensure_future(
            anext(sender.send(SLOT, address, HELO, [message(0)], report=True, smarthost=True)))
        await caught.stalled.wait()
        os.kill(first.proc.pid, signal.SIGKILL)
        with pytest.raises(LinkError, match="transport worker exited with code -9"):
            await job
        caught.stall.set()

        sent = [r async for r in sender.send(SLOT, address, HELO, [message(1)], report=True,
                                             smarthost=True)]
        assert sent == [(0, {})]
        assert sender.pid not in (None, first.proc.pid)
    finally:
        await sender.close()
