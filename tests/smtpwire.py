"""A raw SMTP client for tests: bytes out, whole replies back, over plain asyncio streams.

For what no client library will send: malformed commands, bare LF, floods. Reads are
bounded (``WAIT``) only so that a server that never answers fails the test instead of
hanging it.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress

from mailflow.runtime.lab import Lab

WAIT = 30.0  # seconds: a bound for a server that never answers, not a timing assertion


class Closed(Exception):
    """The server closed the connection."""


class Wire:
    """One TCP connection to an endpoint: bytes out, whole replies back."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def reply(self) -> tuple[int, str]:
        """The next reply: code and text (lines joined by newlines, codes taken off)."""
        lines: list[str] = []
        while True:
            raw = await asyncio.wait_for(self.reader.readline(), WAIT)
            if not raw:
                raise Closed(lines)
            line = raw.decode("utf-8", "replace")
            assert line.endswith("\r\n"), f"reply line without CRLF: {line!r}"
            lines.append(line[4:-2])
            if line[3:4] != "-":
                return int(line[:3]), "\n".join(lines)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def command(self, line: str | bytes) -> tuple[int, str]:
        await self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return await self.reply()

    async def data(self, content: bytes) -> tuple[int, str]:
        """DATA, then ``content`` (CRLF lines, no line starting with '.') and the end dot."""
        assert (await self.command("DATA"))[0] == 354
        assert content.endswith(b"\r\n") and b"\r\n." not in content
        await self.send(content + b".\r\n")
        return await self.reply()

    async def closed(self) -> bool:
        """True when the server has closed the connection (after what it had to say)."""
        try:
            return await asyncio.wait_for(self.reader.read(1), WAIT) == b""
        except ConnectionResetError:
            return True

    async def close(self) -> None:
        self.writer.close()
        with suppress(ConnectionError):
            await self.writer.wait_closed()


async def connect(lab: Lab, server: str = "EX2003-A", *, greet: bool = True) -> Wire:
    host, port = lab.endpoint_address(server)
    reader, writer = await asyncio.open_connection(host, port)
    wire = Wire(reader, writer)
    if greet:
        code, _ = await wire.reply()
        assert code == 220
    return wire
