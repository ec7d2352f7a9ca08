"""One SMTP session of an endpoint: bytes in, commands answered with named replies out.

aiosmtpd gives the transport, the line reader and the idle timer; the command
loop and every command are ours, so every reply comes from ``mailflow.replies``
and the RFC 5321 limits hold: command and text line lengths, NUL, bare LF
(the session ends: SMTP smuggling), undeclared 8-bit data and UTF-8 addresses,
an idle client, too many errors. A message over the size limit is read to its
end and dropped line by line, never held whole. MAIL, RCPT and DATA go to the
endpoint's handler (``mailflow.smtp``), which asks the router.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP, Envelope, Session

from mailflow import replies
from stores.topology import Defaults

log = logging.getLogger(__name__)

# RFC 5321 §4.5.3.1.4: a command line is at most 512 octets with its CRLF. MAIL may
# grow by the parameters of the extensions it takes: SIZE (RFC 1870: 26),
# BODY (RFC 1652: 14) and SMTPUTF8 (RFC 6531: 10).
COMMAND_LINE_LIMIT = 512
MAIL_LINE_LIMIT = COMMAND_LINE_LIMIT + 26 + 14 + 10
# RFC 5321 §4.5.3.1.6: a text line is at most 1000 octets with its CRLF (998 characters),
# not counting the dot a client adds for transparency.
TEXT_LINE_LIMIT = 1000
# After a reply that ends a session while the client is still sending (bare LF, too many
# errors), its input is read and dropped for at most this long (real seconds) before the
# close: closing with unread input makes TCP send a reset, which can destroy the reply.
LINGER_SECONDS = 2.0
# Commands known to SMTP that these endpoints do not offer (not advertised in EHLO).
NOT_IMPLEMENTED = frozenset({"EXPN", "AUTH", "STARTTLS", "ETRN", "TURN", "ATRN", "BDAT"})


@dataclass(frozen=True)
class Limits:
    max_message_size: int
    max_recipients: int
    # Real seconds a client may stay silent (RFC 5321 §4.5.3.2.7: at least 5 minutes).
    idle_timeout: float = 300.0
    # Sessions open at once on one endpoint; the next connection is answered 421 4.3.2.
    max_connections: int = 200
    # Protocol errors (500-504) after which a session is closed with 421 4.7.0.
    max_errors: int = 20

    @classmethod
    def from_defaults(cls, defaults: Defaults) -> Limits:
        return cls(
            max_message_size=defaults.max_message_size,
            max_recipients=defaults.max_recipients,
            idle_timeout=defaults.smtp_idle_timeout_seconds,
            max_connections=defaults.smtp_max_connections,
        )


class _Envelope(Envelope):
    def __init__(self) -> None:
        super().__init__()
        # BODY= of MAIL (RFC 6152): None when not declared.
        self.body: str | None = None


@dataclass
class _Line:
    """One line read from the client."""

    data: bytes  # with its line end; only the tail when the line was too long
    too_long: bool = False

    @property
    def crlf(self) -> bool:
        return self.data.endswith(b"\r\n")


class SmtpSession(SMTP):
    """One SMTP session. aiosmtpd gives the transport, the line reader and the timer;
    the command loop and every command are ours, so every reply is a named one."""

    def __init__(
        self,
        limits: Limits,
        on_reject: Callable[[int], None],
        on_close: Callable[[SmtpSession], None],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._limits = limits
        self._on_reject = on_reject
        self._on_close = on_close
        self._errors = 0
        self._hanging_up = False
        self._last_heard = self.loop.time()
        self._commands: dict[str, Callable[[str | None], Awaitable[None]]] = {
            "HELO": self.smtp_HELO,
            "EHLO": self.smtp_EHLO,
            "MAIL": self.smtp_MAIL,
            "RCPT": self.smtp_RCPT,
            "DATA": self.smtp_DATA,
            "RSET": self.smtp_RSET,
            "NOOP": self.smtp_NOOP,
            "QUIT": self.smtp_QUIT,
            "VRFY": self.smtp_VRFY,
            "HELP": self.smtp_HELP,
        }

    # -- transport, timer, replies ----------------------------------------------------------

    def _create_envelope(self) -> Envelope:
        return _Envelope()

    def _new_envelope(self) -> None:
        """A new transaction (RSET, HELO/EHLO, after DATA)."""
        self.envelope = self._create_envelope()

    @property
    def _wire(self) -> asyncio.Transport | None:
        """The transport, typed as the socket transport it is."""
        assert self.transport is None or isinstance(self.transport, asyncio.Transport)
        return self.transport

    def connection_lost(self, error: Exception | None) -> None:
        try:
            super().connection_lost(error)
        finally:
            self._on_close(self)

    def eof_received(self) -> bool | None:
        # aiosmtpd drops the session at once; we first answer what the client sent
        # before it closed its side (a pipelined batch ending in QUIT).
        return asyncio.StreamReaderProtocol.eof_received(self)

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
        wire.write(self._closing(replies.S421_IDLE_TIMEOUT).encode() + b"\r\n")
        self._close_transport()

    def shutdown(self) -> None:
        """The endpoint is stopping: say so and close."""
        wire = self._wire
        if wire is None:
            return
        if not self._hanging_up:
            self._hanging_up = True
            wire.write(self._closing(replies.S421_SHUTTING_DOWN).encode() + b"\r\n")
        wire.close()
        if wire.get_write_buffer_size():
            wire.abort()

    def _closing(self, reply: str) -> str:
        return reply.format(hostname=self.hostname)

    def _close_transport(self) -> None:
        transport = self._wire
        if transport is None:
            return
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
        await super().push(status)

    async def _hang_up(self, reply: str, *, linger: bool = False) -> None:
        """Send a closing reply (421, 221, 521) and end the session; with ``linger``,
        half-close first and drop what the client still sends (a lingering close)."""
        self._hanging_up = True
        with contextlib.suppress(ConnectionError):
            await self.push(self._closing(reply))
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

    async def _handle_client(self) -> None:
        assert self.session is not None
        try:
            greeting = replies.GREETING.format(hostname=self.hostname, banner=self.__ident__)
            await self.push(f"220 {greeting}")
            while not self._hanging_up and self.transport is not None:
                await self._command(await self._read_line())
                if self._errors >= self._limits.max_errors and not self._hanging_up:
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
            await self.push(replies.S500_LINE_TOO_LONG)
            return
        raw = line.data[:-2]
        if b"\0" in raw:
            await self.push(replies.S500_NUL)
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            await self.push(replies.S500_SYNTAX_ERROR)
            return
        verb, _, arg = text.partition(" ")
        verb = verb.upper()
        limit = MAIL_LINE_LIMIT if verb == "MAIL" else COMMAND_LINE_LIMIT
        if len(line.data) > limit:
            await self.push(replies.S500_LINE_TOO_LONG)
            return
        method = self._commands.get(verb)
        if method is None:
            if verb in NOT_IMPLEMENTED:
                await self.push(replies.S502_NOT_IMPLEMENTED)
            elif verb.isascii() and verb.isalpha():
                await self.push(replies.S500_UNRECOGNIZED)
            else:
                await self.push(replies.S500_SYNTAX_ERROR)
            return
        try:
            await method(arg.strip() or None)
        except (asyncio.CancelledError, ConnectionError, asyncio.IncompleteReadError):
            raise
        except Exception:
            log.exception("%s on %s failed", verb, self.hostname)
            await self.push(replies.S451_INTERNAL_ERROR)

    # -- commands ---------------------------------------------------------------------------

    async def _helo_needed(self) -> bool:
        assert self.session is not None
        if self.session.host_name:
            return False
        await self.push(replies.S503_HELO_FIRST)
        return True

    async def smtp_HELO(self, arg: str | None) -> None:
        assert self.session is not None
        if not arg:
            await self.push(replies.S501_HELO_SYNTAX)
            return
        self._new_envelope()
        self.session.extended_smtp = False
        self.session.host_name = arg
        hello = replies.HELLO.format(hostname=self.hostname, peer=peer_host(self.session))
        await self.push(f"250 {hello}")

    async def smtp_EHLO(self, arg: str | None) -> None:
        assert self.session is not None
        if not arg:
            await self.push(replies.S501_HELO_SYNTAX)
            return
        self._new_envelope()
        self.session.extended_smtp = True
        self.session.host_name = arg
        lines = [
            replies.HELLO.format(hostname=self.hostname, peer=peer_host(self.session)),
            f"SIZE {self.data_size_limit}",
            "PIPELINING",
            "8BITMIME",
            "SMTPUTF8",
            "ENHANCEDSTATUSCODES",
            "HELP",
        ]
        last = len(lines) - 1
        await self.push("\r\n".join(f"250{' ' if i == last else '-'}{text}"
                                    for i, text in enumerate(lines)))

    def _path(self, keyword: str, arg: str | None) -> tuple[str | None, str] | None:
        """(address, parameters) of MAIL FROM:/RCPT TO:; None when the syntax is wrong,
        address None when the path cannot be parsed."""
        if arg is None:
            return None
        rest = self._strip_command_keyword(keyword, arg)
        if not rest:
            return None
        try:
            address, params = self._getaddr(rest)
        except Exception:  # email's header parser on hostile input
            return None, ""
        return address, params or ""

    async def smtp_MAIL(self, arg: str | None) -> None:
        assert self.session is not None and isinstance(self.envelope, _Envelope)
        if await self._helo_needed():
            return
        if self.envelope.mail_from:
            await self.push(replies.S503_NESTED_MAIL)
            return
        path = self._path("FROM:", arg)
        if path is None:
            await self.push(replies.S501_MAIL_SYNTAX)
            return
        address, rest = path
        if address is None:
            await self.push(replies.S553_BAD_SENDER)
            return
        if rest and not self.session.extended_smtp:
            await self.push(replies.S501_MAIL_SYNTAX)
            return
        options = rest.upper().split()
        params = self._getparams(options)
        if params is None:
            await self.push(replies.S501_MAIL_SYNTAX)
            return
        body = params.pop("BODY", None)
        if body is not None and body not in ("7BIT", "8BITMIME"):
            await self.push(replies.S501_BAD_BODY)
            return
        smtputf8 = params.pop("SMTPUTF8", False)
        if smtputf8 is not True and smtputf8 is not False:
            await self.push(replies.S501_SMTPUTF8_VALUE)
            return
        size = params.pop("SIZE", None)
        if size is not None:
            if not isinstance(size, str) or not size.isdigit() or not size.isascii():
                await self.push(replies.S501_BAD_SIZE)
                return
            if self.data_size_limit and int(size) > self.data_size_limit:
                await self.push(replies.S552_TOO_BIG)
                return
        if params:
            await self.push(replies.S555_UNKNOWN_PARAMETER)
            return
        if not address.isascii() and not smtputf8:
            await self.push(replies.S553_UTF8_NOT_DECLARED)
            return
        self.envelope.smtp_utf8 = smtputf8
        self.envelope.body = body if isinstance(body, str) else None
        await self.push(await self._call_handler_hook("MAIL", address, options))

    async def smtp_RCPT(self, arg: str | None) -> None:
        assert self.session is not None and self.envelope is not None
        if await self._helo_needed():
            return
        if not self.envelope.mail_from:
            await self.push(replies.S503_NEED_MAIL)
            return
        path = self._path("TO:", arg)
        if path is None:
            await self.push(replies.S501_RCPT_SYNTAX)
            return
        address, rest = path
        if address is None:
            await self.push(replies.S553_BAD_RECIPIENT)
            return
        if rest:
            # No RCPT parameters are offered (no DSN in EHLO).
            await self.push(replies.S555_UNKNOWN_PARAMETER)
            return
        if not address.isascii() and not self.envelope.smtp_utf8:
            await self.push(replies.S553_UTF8_NOT_DECLARED)
            return
        await self.push(await self._call_handler_hook("RCPT", address, []))

    def _eight_bit_allowed(self) -> bool:
        """RFC 6152: 8-bit content needs EHLO. Undeclared is taken as 8BITMIME (as
        Exchange and Postfix do), but not content declared BODY=7BIT."""
        assert self.session is not None and isinstance(self.envelope, _Envelope)
        if not self.session.extended_smtp:
            return False
        return bool(self.envelope.smtp_utf8) or self.envelope.body != "7BIT"

    async def smtp_DATA(self, arg: str | None) -> None:
        assert self.envelope is not None
        if await self._helo_needed():
            return
        if not self.envelope.rcpt_tos:
            await self.push(replies.S503_NEED_RCPT)
            return
        if arg:
            await self.push(replies.S501_SYNTAX)
            return
        await self.push(f"354 {replies.GO_AHEAD}")
        limit = self.data_size_limit or 0
        lines: list[bytes] = []
        size = 0
        refusal: str | None = None
        eight_bit = False
        while True:
            line = await self._read_line()
            if not line.crlf:
                await self._hang_up(replies.S521_BARE_LF, linger=True)
                return
            if line.too_long:
                refusal = refusal or replies.S500_TEXT_LINE_TOO_LONG
                lines.clear()
                continue
            data = line.data
            if data == b".\r\n":
                break
            if refusal is not None:
                continue  # read to the end, keep nothing
            if data.startswith(b"."):
                data = data[1:]
            if len(data) > TEXT_LINE_LIMIT:
                refusal = replies.S500_TEXT_LINE_TOO_LONG
                lines.clear()
                continue
            size += len(data)
            if limit and size > limit:
                refusal = replies.S552_TOO_BIG
                lines.clear()
                continue
            eight_bit = eight_bit or not data.isascii()
            lines.append(data)
        if refusal is None and eight_bit and not self._eight_bit_allowed():
            refusal = replies.S554_8BIT_NOT_DECLARED
        if refusal is not None:
            self._new_envelope()
            await self.push(refusal)
            return
        content = b"".join(lines)
        lines.clear()
        self.envelope.content = self.envelope.original_content = content
        # The commit is ours, not the client's: the idle timer waits for it.
        if self._timeout_handle is not None:
            self._timeout_handle.cancel()
        status = await self._call_handler_hook("DATA")
        self._last_heard = self.loop.time()
        self._reset_timeout()
        self._new_envelope()
        await self.push(status)

    async def smtp_RSET(self, arg: str | None) -> None:
        if arg:
            await self.push(replies.S501_SYNTAX)
            return
        self._new_envelope()
        await self.push(replies.S250_OK)

    async def smtp_NOOP(self, arg: str | None) -> None:
        await self.push(replies.S250_OK)

    async def smtp_QUIT(self, arg: str | None) -> None:
        if arg:
            await self.push(replies.S501_SYNTAX)
            return
        await self._hang_up(replies.S221_BYE)

    async def smtp_VRFY(self, arg: str | None) -> None:
        await self.push(replies.S252_CANNOT_VRFY if arg else replies.S501_SYNTAX)

    async def smtp_HELP(self, arg: str | None) -> None:
        await self.push(replies.S214_HELP)


def peer_host(session: Session) -> str:
    return str(session.peer[0]) if session.peer else "unknown"
