"""One SMTP connection of an endpoint: bytes in, command lines to the session's handlers out.

aiosmtpd gives the transport, the line reader and the idle timer; the reading, the
command loop and the closing are ours. In: the client's bytes. Out: each command line,
as verb and argument, to the handler ``mailflow.smtp.session`` registered for the verb,
and the replies they push. Whatever the command, this layer answers a line that is over
the RFC 5321 length, holds NUL or is not UTF-8, or names an unknown verb; a bare LF ends
the session (SMTP smuggling), and so do an idle client, too many errors and the endpoint
stopping. Every 4xx/5xx reply is reported to the endpoint (``on_reject``). At each
stage (connect here, the commands in the session) the endpoint's fault gate may take over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP

from mailflow.smtp import replies
from mailflow.smtp.replies import Reply

log = logging.getLogger(__name__)

# Asked at each stage of a session (``SmtpConnection._faulted``): whether a fault took it over.
Gate = Callable[["SmtpConnection", str, "str | None"], Awaitable[bool]]

# RFC 5321 §4.5.3.1.4: a command line is at most 512 octets with its CRLF. MAIL may
# grow by the parameters of the extensions it takes: SIZE (RFC 1870: 26),
# BODY (RFC 1652: 14) and SMTPUTF8 (RFC 6531: 10).
COMMAND_LINE_LIMIT = 512
MAIL_LINE_LIMIT = COMMAND_LINE_LIMIT + 26 + 14 + 10
# After a reply that ends a session while the client is still sending (bare LF, too many
# errors), its input is read and dropped for at most this long (real seconds) before the
# close: closing with unread input makes TCP send a reset, which can destroy the reply.
LINGER_SECONDS = 2.0
# Bytes of one line the reader returns whole; a longer one is read and dropped in pieces.
READ_LIMIT = 16 * 1024
# Bytes asked of the socket per read: under glibc's mmap threshold (128 KiB), see read_at_most.
RECV_SIZE = 64 * 1024
# Commands known to SMTP that these endpoints do not offer (not advertised in EHLO); AUTH
# and STARTTLS are offered when the server's scenario entry turns them on.
NOT_IMPLEMENTED = frozenset({"EXPN", "AUTH", "STARTTLS", "ETRN", "TURN", "ATRN", "BDAT"})
# The private members of aiosmtpd's SMTP that this module and mailflow.smtp.session call,
# read or override: aiosmtpd may rename any of them in a minor release (hence the upper
# bound in pyproject.toml). A new use goes here too: tests/test_aiosmtpd_contract.py
# fails, naming each, when one is gone.
AIOSMTPD_PRIVATE_METHODS = (
    "_call_handler_hook", "_create_envelope", "_getaddr", "_getparams", "_handle_client",
    "_reset_timeout", "_strip_command_keyword", "_timeout_cb",
)
# Set on each instance: by SMTP.__init__, or (_reader, _writer) when a client connects.
AIOSMTPD_PRIVATE_ATTRIBUTES = (
    "__ident__", "_timeout_duration", "_timeout_handle", "_reader", "_writer",
    "_tls_protocol", "_auth_require_tls", "_auth_methods", "_authenticator",
    "_original_transport",
)


@dataclass
class _Line:
    """One line read from the client."""

    data: bytes  # with its line end; only the tail when the line was too long
    too_long: bool = False

    @property
    def crlf(self) -> bool:
        return self.data.endswith(b"\r\n")


class SmtpConnection(SMTP):
    """The transport side of a session; ``mailflow.smtp.session.SmtpSession`` adds the
    commands. aiosmtpd gives the transport, the line reader and the timer; the command
    loop is ours, so every reply is a named one."""

    # Verb -> handler, filled by the session; a verb not here is answered 500 or 502.
    _commands: dict[str, Callable[[str | None], Awaitable[None]]]

    # The line reader's limit: the longest line it returns whole, and half of what it
    # buffers before it stops reading the socket. With aiosmtpd's 1001, each 2 KB message
    # stopped and restarted the reading (two epoll_ctl calls and their Python). Lines over
    # the RFC 5321 limits are still refused, by their length (_command, smtp_DATA).
    line_length_limit = READ_LIMIT

    def __init__(
        self,
        on_reject: Callable[[int], None],
        on_close: Callable[[], None],
        *,
        max_errors: int,
        gate: Gate | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._gate = gate
        self._on_reject = on_reject
        self._on_close = on_close
        self._max_errors = max_errors
        self._errors = 0
        self._hanging_up = False
        self._last_heard = self.loop.time()
        # Replies not yet written: those to a pipelined group go out in one write.
        self._unsent: list[bytes] = []
        # Set while a reply must be on the wire before the next step (STARTTLS's 220).
        self._write_now = False

    # -- transport, timer, replies ----------------------------------------------------------

    @property
    def _wire(self) -> asyncio.Transport | None:
        """The transport, typed as the socket transport it is."""
        assert self.transport is None or isinstance(self.transport, asyncio.Transport)
        return self.transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        read_at_most(transport, RECV_SIZE)

    def connection_lost(self, error: Exception | None) -> None:
        try:
            super().connection_lost(error)
        finally:
            self._on_close()

    def eof_received(self) -> bool | None:
        # aiosmtpd drops the session at once; we first answer what the client sent
        # before it closed its side (a pipelined batch ending in QUIT). Over TLS, keeping
        # the connection half open has no effect (asyncio says so in its log).
        keep_open = asyncio.StreamReaderProtocol.eof_received(self)
        return keep_open and self._tls_protocol is None

    def data_received(self, data: bytes) -> None:
        self._last_heard = self.loop.time()
        super().data_received(data)

    def _timeout_cb(self) -> None:
        """The idle timer: one per session, re-armed while the client keeps sending.
        A client we stopped reading (its replies unread) is idle too."""
        wire = self._wire
        if wire is None or self._hanging_up:
            return
        quiet = self.loop.time() - self._last_heard
        if quiet < self._timeout_duration:
            self._reset_timeout(self._timeout_duration - quiet)
            return
        log.info("%r idle for %ss, closing", self.session and self.session.peer,
                 self._timeout_duration)
        self._hanging_up = True
        self._on_reject(421)
        self._flush()
        wire.write(self._closing(replies.S421_IDLE_TIMEOUT).encode() + b"\r\n")
        self._close_transport()

    def shutdown(self) -> None:
        """The endpoint is stopping: say so and close."""
        wire = self._wire
        if wire is None:
            return
        if not self._hanging_up:
            self._hanging_up = True
            self._flush()
            wire.write(self._closing(replies.S421_SHUTTING_DOWN).encode() + b"\r\n")
        wire.close()
        if wire.get_write_buffer_size():
            wire.abort()

    def _closing(self, reply: Reply) -> str:
        return reply.line(hostname=self.hostname)

    def _close_transport(self) -> None:
        transport = self._wire
        if transport is None:
            return
        self._flush()
        transport.close()
        if transport.get_write_buffer_size():
            # A client that does not read would keep close() waiting for ever.
            self.loop.call_later(self._timeout_duration, transport.abort)

    async def push(self, status: AnyStr) -> None:
        code = status[:3] if isinstance(status, str) else status[:3].decode("ascii", "replace")
        if code.isdigit():
            if code[:1] in ("4", "5"):
                self._on_reject(int(code))
            if 500 <= int(code) <= 504:
                self._errors += 1
        # As aiosmtpd's push, but the reply waits in _unsent until this session has to
        # wait itself (for the client's next bytes, or a commit): the replies to a
        # pipelined group then take one write, not one each (RFC 2920 §3.2).
        reply = status if isinstance(status, bytes) else status.encode(
            "utf-8" if self.enable_SMTPUTF8 else "ascii")
        if not self._unsent:
            self.loop.call_soon(self._flush)
        self._unsent.append(reply + b"\r\n")
        if self._write_now:
            self._flush()
        await self._writer.drain()

    def _flush(self) -> None:
        """Write the replies not yet written."""
        if self._unsent and self._wire is not None:
            self._wire.write(b"".join(self._unsent))
        self._unsent.clear()

    async def _hang_up(self, reply: Reply, *, linger: bool = False) -> None:
        """Send a closing reply (421, 221, 521) and end the session; with ``linger``,
        half-close first and drop what the client still sends (a lingering close)."""
        self._hanging_up = True
        with contextlib.suppress(ConnectionError):
            await self.push(self._closing(reply))
        self._flush()
        wire = self._wire
        if linger and wire is not None and wire.can_write_eof():
            wire.write_eof()
            with contextlib.suppress(TimeoutError, ConnectionError):
                async with asyncio.timeout(LINGER_SECONDS):
                    while await self._reader.read(65536):
                        pass
        self._close_transport()

    # -- reading ----------------------------------------------------------------------------

    async def _read_line(self) -> _Line:
        """The next line up to LF. A line longer than the reader's limit is read and
        dropped piece by piece, so it never sits whole in memory."""
        too_long = False
        while True:
            try:
                return _Line(await self._reader.readuntil(b"\n"), too_long)
            except asyncio.LimitOverrunError as exc:
                too_long = True
                # Drop what was read but its last byte: it may be the CR of the CRLF.
                await self._reader.read(exc.consumed - 1)

    async def _faulted(self, stage: str, address: str | None = None) -> bool:
        """Whether a fault rule of the endpoint took this stage over (``mailflow.smtp.faults``:
        it answered, or closed the connection)."""
        return self._gate is not None and await self._gate(self, stage, address)

    async def pause(self, seconds: float) -> bool:
        """Write the replies pending, wait ``seconds``; whether the client is still there:
        not when the connection is closing, or the client closed its side with nothing
        left unread (it would not read a reply either)."""
        self._flush()
        await asyncio.sleep(seconds)
        wire = self._wire
        return wire is not None and not wire.is_closing() and not self._reader.at_eof()

    async def drop(self, line: str | None) -> None:
        """Send ``line`` (if any) and close the connection at once."""
        self._hanging_up = True
        if line is not None:
            with contextlib.suppress(ConnectionError):
                await self.push(line)
        self._close_transport()

    async def _handle_client(self) -> None:
        assert self.session is not None
        try:
            if await self._faulted("connect"):
                return
            await self.push(replies.S220_GREETING.line(hostname=self.hostname,
                                                       banner=self.__ident__))
            while not self._hanging_up and self.transport is not None:
                await self._command(await self._read_line())
                if self._errors >= self._max_errors and not self._hanging_up:
                    await self._hang_up(replies.S421_TOO_MANY_ERRORS, linger=True)
        except asyncio.IncompleteReadError:
            # The client closed its side: whatever it sent has been answered.
            self._close_transport()
        except ConnectionError:
            self._close_transport()
        except asyncio.CancelledError:
            self._close_transport()
            raise

    async def _command(self, line: _Line) -> None:
        if not line.crlf:
            await self._hang_up(replies.S521_BARE_LF, linger=True)
            return
        if line.too_long:
            await self.push(replies.S500_LINE_TOO_LONG.line())
            return
        raw = line.data[:-2]
        if b"\0" in raw:
            await self.push(replies.S500_NUL.line())
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            await self.push(replies.S500_SYNTAX_ERROR.line())
            return
        verb, _, arg = text.partition(" ")
        verb = verb.upper()
        limit = MAIL_LINE_LIMIT if verb == "MAIL" else COMMAND_LINE_LIMIT
        if len(line.data) > limit:
            await self.push(replies.S500_LINE_TOO_LONG.line())
            return
        method = self._commands.get(verb)
        if method is None:
            if verb in NOT_IMPLEMENTED:
                await self.push(replies.S502_NOT_IMPLEMENTED.line())
            elif verb.isascii() and verb.isalpha():
                await self.push(replies.S500_UNRECOGNIZED.line())
            else:
                await self.push(replies.S500_SYNTAX_ERROR.line())
            return
        refusal = self._refusal(verb)
        if refusal is not None:
            await self.push(refusal.line())
            return
        try:
            # Only blanks are trimmed: a CR or other control left in the argument is the
            # command's to refuse (in HELO/EHLO it would reach the Received: header).
            await method(arg.strip(" \t") or None)
        except (asyncio.CancelledError, ConnectionError, asyncio.IncompleteReadError):
            raise
        except Exception:
            log.exception("%s on %s failed", verb, self.hostname)
            await self.push(replies.S451_INTERNAL_ERROR.line())

    def _refusal(self, verb: str) -> Reply | None:
        """The reply that refuses ``verb`` in this session's state (STARTTLS or AUTH
        first), or None to run it; the session says when."""
        return None


def read_at_most(transport: asyncio.BaseTransport, size: int) -> None:
    """Make a socket transport ask for at most ``size`` bytes per read. asyncio asks for
    256 KiB: a buffer that large comes from mmap, and is shrunk and unmapped after every
    read, three system calls per read (``strace -c``: one of each per recvfrom). A smaller
    one comes from the heap. ``max_size`` is asyncio's attribute for it (no public API)."""
    if isinstance(getattr(transport, "max_size", None), int):
        transport.max_size = size  # type: ignore[attr-defined]
