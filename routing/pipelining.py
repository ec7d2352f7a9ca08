"""The SMTP client of the hop between two servers of the lab, pipelined (RFC 2920).

In: from the sender worker (``routing.sender``), one connection's messages: sender,
recipients and the bytes sent after DATA. Out: how many of them the receiver took (its
250 after the data), and the error at the first one it did not take.

Why not aiosmtplib, which the smarthost keeps: it needs four round trips per message
(MAIL, RCPT, DATA, the data), and it cannot pipeline, because its protocol drops a reply
that arrives before the previous one was read. Here one message's data goes in one
write with the next message's MAIL, RCPT and DATA, and their replies come back
together: one round trip per message, the fewest wake-ups for both ends. Every endpoint
of the lab offers PIPELINING; to a server that does not, each command waits for its reply.
A server that offers STARTTLS on its hop port (one with ``require_tls``) gets it, with a
context that checks no certificate: the peer proves itself by the signed hop token
(``routing.hop``), and the hop port is loopback only (docs/tls-and-auth.md).
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Sequence
from typing import NamedTuple

# A message: sender, recipients and the bytes sent after DATA.
Outgoing = tuple[str, list[str], bytes]

# A reply line longer than this ends the connection: no endpoint of the lab sends one.
REPLY_LINE_LIMIT = 4096
_LINE_END = re.compile(rb"\r\n|\r|\n")
_LEADING_DOT = re.compile(rb"^\.", re.MULTILINE)


def unverified_context() -> ssl.SSLContext:
    """A client context that encrypts but checks no certificate: for the hop, and for a
    smarthost with ``smarthost_tls = "starttls"`` (test smarthosts are self-signed)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class _Command(NamedTuple):
    line: bytes  # empty for the greeting: only a reply to read
    expected: int  # the reply code that lets the transaction go on
    name: str  # as an error names it


class ReplyError(Exception):
    """The receiver answered a command with something other than what goes on."""

    def __init__(self, code: int, text: str, command: str) -> None:
        super().__init__(f"{code} {text} (in reply to {command})")
        self.code = code


def needs_smtputf8(mail_from: str, rcpts: list[str]) -> bool:
    """An address in UTF-8 (RFC 6531) is sent only with SMTPUTF8 (every endpoint of the lab
    offers it)."""
    return not (mail_from + "".join(rcpts)).isascii()


def data_section(data: bytes) -> bytes:
    """``data`` as sent after DATA's 354: CRLF line ends, dot-stuffed, and the end mark."""
    data = _LEADING_DOT.sub(b"..", _LINE_END.sub(b"\r\n", data))
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


class _Wire(asyncio.Protocol):
    """The connection's bytes: what the server sent and has not been read yet, and
    whether it has closed its side."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.closed = False
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def line(self) -> bytes:
        while (end := self.buffer.find(b"\n")) < 0:
            if self.closed:
                raise ConnectionResetError("the server closed the connection")
            if len(self.buffer) > REPLY_LINE_LIMIT:
                raise ConnectionAbortedError("the server sent a reply line too long")
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        line = bytes(self.buffer[:end + 1])
        del self.buffer[:end + 1]
        return line


class PipeliningClient:
    """One connection to a server of the lab, greeted with EHLO, reused message after
    message."""

    def __init__(self, wire: _Wire, timeout: float) -> None:
        self._wire = wire
        self._timeout = timeout
        self._pipelining = False
        self.taken = 0  # of the messages of the last ``send``

    @classmethod
    async def connect(cls, host: str, port: int, helo: str, timeout: float
                      ) -> PipeliningClient:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            _, wire = await loop.create_connection(_Wire, host, port)
            client = cls(wire, timeout)
            try:
                await client._expect(_Command(b"", 220, "the greeting"))
                ehlo = await client._ehlo(helo)
                if "STARTTLS" in ehlo:
                    await client._starttls()
                    ehlo = await client._ehlo(helo)
            except BaseException:
                client.close()
                raise
        client._pipelining = "PIPELINING" in ehlo
        return client

    async def _ehlo(self, helo: str) -> set[str]:
        """EHLO; the keywords of the extensions the server offers."""
        text = await self._expect(_Command(b"EHLO " + helo.encode() + b"\r\n", 250, "EHLO"))
        return {line.split(" ", 1)[0].upper() for line in text.splitlines()[1:]}

    async def _starttls(self) -> None:
        """STARTTLS (RFC 3207), then TLS on the same connection."""
        await self._expect(_Command(b"STARTTLS\r\n", 220, "STARTTLS"))
        if self._wire.buffer:  # RFC 3207 §5: nothing may follow the 220 in plain text
            raise ConnectionAbortedError("the server sent data after its STARTTLS reply")
        assert self._wire.transport is not None
        tls = await asyncio.get_running_loop().start_tls(
            self._wire.transport, self._wire, unverified_context())
        assert isinstance(tls, asyncio.Transport)
        self._wire.transport = tls

    @property
    def is_connected(self) -> bool:
        # Anything the server sent unasked (a 421 before it closed) ends the connection.
        return not self._wire.closed and not self._wire.buffer

    async def send(self, outgoing: Sequence[Outgoing]) -> None:
        """Send ``outgoing``, counting in ``taken`` the messages the receiver took (its 250
        after the data). Raises ``ReplyError`` (or the connection's error) at the first one
        it did not take; that one may have been taken all the same."""
        self.taken = 0
        last: _Command | None = None  # the previous message's data, its reply still to come
        for mail_from, rcpts, data in outgoing:
            utf8 = b" SMTPUTF8" if needs_smtputf8(mail_from, rcpts) else b""
            envelope = [_Command(b"MAIL FROM:<" + mail_from.encode() + b">" + utf8 + b"\r\n",
                                 250, f"MAIL FROM:<{mail_from}>")]
            envelope.extend(_Command(b"RCPT TO:<" + rcpt.encode() + b">\r\n", 250,
                                     f"RCPT TO:<{rcpt}>") for rcpt in rcpts)
            envelope.append(_Command(b"DATA\r\n", 354, "DATA"))
            async with asyncio.timeout(self._timeout):
                if last is None:
                    self._write(envelope)
                else:
                    self._write([last, *envelope])
                    await self._expect(last)
                    self.taken += 1
                for command in envelope:
                    await self._expect(command)
            last = _Command(data_section(data), 250, "the end of the data")
        if last is not None:
            async with asyncio.timeout(self._timeout):
                self._write([last])
                await self._expect(last)
                self.taken += 1

    def _write(self, commands: list[_Command]) -> None:
        """Pipelined, a group of commands goes in one write; else each waits for
        ``_expect``."""
        if self._pipelining:
            assert self._wire.transport is not None
            self._wire.transport.write(b"".join(command.line for command in commands))

    async def _expect(self, command: _Command) -> str:
        """The reply to ``command`` (sent first, when not pipelined), checked against the
        code that lets the transaction go on; returns its text."""
        if not self._pipelining and command.line:
            assert self._wire.transport is not None
            self._wire.transport.write(command.line)
        code, text = await self._reply()
        if code != command.expected:
            raise ReplyError(code, text, command.name)
        return text

    async def _reply(self) -> tuple[int, str]:
        lines = []
        while True:
            line = (await self._wire.line()).rstrip(b"\r\n").decode("utf-8", "replace")
            if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in ("", " ", "-"):
                raise ConnectionAbortedError(f"the server's reply is not SMTP: {line[:80]!r}")
            lines.append(line[4:])
            if line[3:4] != "-":
                return int(line[:3]), "\n".join(lines)

    async def quit(self) -> None:
        """Say QUIT and close, whatever the answer."""
        try:
            quit = _Command(b"QUIT\r\n", 221, "QUIT")
            async with asyncio.timeout(self._timeout):
                self._write([quit])
                await self._expect(quit)
        finally:
            self.close()

    def close(self) -> None:
        if self._wire.transport is not None:
            self._wire.transport.close()
