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

from routing.pipelining import Outgoing, data_section
from routing.sender import LinkError, Sender
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
            smarthost=True)]
        second = [r async for r in sender.send(SLOT, address, HELO, [message(2)],
                                               smarthost=True)]
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
    assert str(broke.value) == ("ReplyError: 550 5.1.1 No such user here"
                                " (in reply to RCPT TO:<nobody@example.org>)")
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
    assert str(broke.value).startswith("ConnectionRefusedError: ")


async def test_a_worker_that_dies_fails_its_jobs_and_the_next_job_starts_another(
    catcher: tuple[Catcher, tuple[str, int]]
) -> None:
    caught, address = catcher
    caught.stall = asyncio.Event()
    sender = Sender()
    try:
        first = await sender.start()
        job = asyncio.ensure_future(
            anext(sender.send(SLOT, address, HELO, [message(0)], smarthost=True)))
        await caught.stalled.wait()
        os.kill(first.proc.pid, signal.SIGKILL)
        with pytest.raises(LinkError, match="transport worker exited with code -9"):
            await job
        caught.stall.set()

        sent = [r async for r in sender.send(SLOT, address, HELO, [message(1)],
                                             smarthost=True)]
        assert sent == [(0, {})]
        assert sender.pid not in (None, first.proc.pid)
    finally:
        await sender.close()


@dataclass
class PipeliningPeer:
    """A receiver that offers PIPELINING and takes every message. It keeps each read as it
    came off the socket, each command, and each message's data."""

    reads: list[bytes] = field(default_factory=list)
    commands: list[bytes] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)

    def protocol(self) -> asyncio.Protocol:
        return _PeerSession(self)


class _PeerSession(asyncio.Protocol):
    def __init__(self, peer: PipeliningPeer) -> None:
        self.peer = peer
        self.unread = b""
        self.data: list[bytes] | None = None  # between 354 and the end mark

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(b"220 peer ready\r\n")

    def data_received(self, data: bytes) -> None:
        self.peer.reads.append(data)
        self.unread += data
        while b"\r\n" in self.unread:
            line, _, self.unread = self.unread.partition(b"\r\n")
            self.line(line)

    def line(self, line: bytes) -> None:
        if self.data is not None:
            if line != b".":
                self.data.append(line)
                return
            self.peer.messages.append(b"\r\n".join(self.data))
            self.data = None
            self.transport.write(b"250 taken\r\n")
            return
        self.peer.commands.append(line)
        verb = line[:4].upper()
        if verb == b"EHLO":
            self.transport.write(b"250-peer\r\n250-SIZE 1000000\r\n250 PIPELINING\r\n")
        elif verb == b"DATA":
            self.data = []
            self.transport.write(b"354 go ahead\r\n")
        elif verb == b"QUIT":
            self.transport.write(b"221 bye\r\n")
            self.transport.close()
        else:
            self.transport.write(b"250 ok\r\n")


async def test_a_server_that_offers_pipelining_gets_each_message_in_one_round_trip() -> None:
    peer = PipeliningPeer()
    server = await asyncio.get_running_loop().create_server(peer.protocol, "127.0.0.1", 0)
    address = server.sockets[0].getsockname()[:2]
    sender = Sender()
    outgoing = [message(0), message(1, ["a@example.org", "b@example.org"]), message(2)]
    try:
        sent = [r async for r in sender.send(("EX2003-A", "EX2003-B", 0), address, HELO,
                                             outgoing)]
    finally:
        await sender.close()
        server.close()
        await server.wait_closed()
    assert sent == []  # a server of the lab: only the end of the job
    assert peer.messages == [data.removesuffix(b"\r\n") for _, _, data in outgoing]
    envelope = [b"MAIL FROM:<tester@example.net>", b"RCPT TO:<friend@example.org>", b"DATA"]
    assert peer.commands == [
        b"EHLO " + HELO.encode(), *envelope,
        b"MAIL FROM:<tester@example.net>", b"RCPT TO:<a@example.org>",
        b"RCPT TO:<b@example.org>", b"DATA",
        *envelope, b"QUIT",  # the worker says QUIT when the lab closes it
    ]
    # A client that waits for each reply can never send these in one write: the
    # envelope as one group, and a message's end mark with the next one's envelope.
    assert any(read.startswith(b"\r\n".join(envelope)) for read in peer.reads)
    assert any(b"body 0\r\n.\r\nMAIL FROM:" in read for read in peer.reads)


def test_the_data_is_sent_with_crlf_line_ends_dots_stuffed_and_the_end_mark() -> None:
    assert data_section(b"a\n.b\r..c\r\nd") == b"a\r\n..b\r\n...c\r\nd\r\n.\r\n"
    assert data_section(b"") == b"\r\n.\r\n"
