"""One SMTP session of an endpoint: command lines in, commands answered with named replies out.

``mailflow.smtp.connection`` reads the lines and handles what is wrong with a line
whatever its command; here are the commands, so every reply comes from
``mailflow.smtp.replies`` and RFC 5321 holds: HELO/EHLO first and printable, the order of
MAIL, RCPT and DATA, the syntax of paths (``mailflow.smtp.paths``) and ESMTP parameters
(SIZE, BODY, SMTPUTF8), undeclared 8-bit data and UTF-8 addresses, text line lengths,
address probing (too many unknown recipients). A message over the size limit is read to its
end and dropped line by line, never held whole. MAIL, RCPT and DATA go to the endpoint's
handler (``mailflow.smtp``), which asks the router; a fault rule may take any stage over.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from aiosmtpd.smtp import Envelope, Session

from mailflow.smtp import replies
from mailflow.smtp.paths import plain_path, strict_path
from mailflow.smtp.replies import Reply
from mailflow.smtp.secure import SecureConnection
from stores.topology import Defaults

# RFC 5321 §4.5.3.1.6: a text line is at most 1000 octets with its CRLF (998 characters),
# not counting the dot a client adds for transparency.
TEXT_LINE_LIMIT = 1000
# What the router's verdict "unknown user" is answered (counted against address probing).
_UNKNOWN_USER = replies.S550_UNKNOWN_USER.line()


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
    # Address probing: after this many 550 5.1.1 in a session each further one waits
    # ``unknown_recipient_delay`` real seconds, and the session is closed with 421 4.7.0
    # at ``max_unknown_recipients`` of them (0: no limit, as on the lab's own hop).
    unknown_recipients_before_delay: int = 10
    unknown_recipient_delay: float = 1.0
    max_unknown_recipients: int = 20

    @classmethod
    def from_defaults(cls, defaults: Defaults) -> Limits:
        return cls(
            max_message_size=defaults.max_message_size,
            max_recipients=defaults.max_recipients,
            idle_timeout=defaults.smtp_idle_timeout_seconds,
            max_connections=defaults.smtp_max_connections,
            unknown_recipients_before_delay=defaults.smtp_unknown_recipients_before_delay,
            unknown_recipient_delay=defaults.smtp_unknown_recipient_delay_seconds,
            max_unknown_recipients=defaults.smtp_max_unknown_recipients,
        )


class _Envelope(Envelope):
    def __init__(self) -> None:
        super().__init__()
        # BODY= of MAIL (RFC 6152): None when not declared.
        self.body: str | None = None


class SmtpSession(SecureConnection):
    """One SMTP session: the commands on a ``SecureConnection`` (STARTTLS and AUTH)."""

    def __init__(
        self,
        limits: Limits,
        on_reject: Callable[[int], None],
        on_close: Callable[[SmtpSession], None],
        **kwargs: Any,
    ) -> None:
        super().__init__(on_reject, partial(on_close, self), max_errors=limits.max_errors,
                         **kwargs)
        self._limits = limits
        # 550 5.1.1 answered in this session (address probing, see Limits).
        self._unknown_recipients = 0
        self._commands = {
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
            **self.secure_commands(),
        }

    # -- the transaction --------------------------------------------------------------------

    def _create_envelope(self) -> Envelope:
        return _Envelope()

    def _new_envelope(self) -> None:
        """A new transaction (RSET, HELO/EHLO, after DATA)."""
        self.envelope = self._create_envelope()

    # -- commands ---------------------------------------------------------------------------

    async def _helo_needed(self) -> bool:
        assert self.session is not None
        if self.session.host_name:
            return False
        await self.push(replies.S503_HELO_FIRST.line())
        return True

    async def _bad_hello(self, arg: str | None) -> bool:
        """Answer 501 to a HELO/EHLO without a name, or whose name holds a character that
        is not printable: a lone CR (the line reader splits at LF only), another control,
        a line or paragraph separator, a bidi override. The name is written into the
        Received: header, where any of them could forge a header line."""
        if not arg:
            await self.push(replies.S501_HELO_SYNTAX.line())
            return True
        if not arg.isprintable():
            await self.push(replies.S501_HELO_CONTROL.line())
            return True
        return False

    async def smtp_HELO(self, arg: str | None) -> None:
        assert self.session is not None
        if await self._bad_hello(arg) or await self._faulted("helo"):
            return
        self._new_envelope()
        self.session.extended_smtp = False
        self.session.host_name = arg
        await self.push(replies.S250_HELLO.line(hostname=self.hostname,
                                                peer=peer_host(self.session)))

    async def smtp_EHLO(self, arg: str | None) -> None:
        assert self.session is not None
        if await self._bad_hello(arg) or await self._faulted("helo"):
            return
        self._new_envelope()
        self.session.extended_smtp = True
        self.session.host_name = arg
        lines = [
            replies.S250_HELLO.text.format(hostname=self.hostname, peer=peer_host(self.session)),
            f"SIZE {self.data_size_limit}",
            "PIPELINING",
            "8BITMIME",
            "SMTPUTF8",
            "ENHANCEDSTATUSCODES",
            "HELP",
            *self.ehlo_keywords(),
        ]
        last = len(lines) - 1
        await self.push("\r\n".join(f"250{' ' if i == last else '-'}{text}"
                                    for i, text in enumerate(lines)))

    def _path(self, keyword: str, arg: str | None) -> tuple[str | None, str] | None:
        """(address, parameters) of MAIL FROM:/RCPT TO:; None when the text is not an
        RFC 5321 path (501), address None when it is one but not a mailbox name (553)."""
        if arg is None:
            return None
        rest = self._strip_command_keyword(keyword, arg)
        path = strict_path(rest) if rest else None
        if path is None:
            return None
        # aiosmtpd's _getaddr builds a class and runs email's header parser for every path
        # (~7 % of the accept profile, docs/benchmarks.md hotspot 9); an ordinary path does
        # not need it. plain_path knows nothing of aiosmtpd's local_part_limit (unset here),
        # so with one set every path would go to _getaddr.
        plain = None if self.local_part_limit else plain_path(path.path)
        if plain is not None:
            return plain[0], path.params
        try:
            address, _ = self._getaddr(path.path)
        except Exception:  # email's header parser on hostile input
            return None, ""
        # email's parser decodes RFC 2047 encoded-words: what it made of the mailbox must
        # be what the client wrote, or the mail would go to another address.
        if address != path.mailbox:
            return None, ""
        return address, path.params

    async def smtp_MAIL(self, arg: str | None) -> None:
        assert self.session is not None and isinstance(self.envelope, _Envelope)
        if await self._helo_needed():
            return
        if self.envelope.mail_from:
            await self.push(replies.S503_NESTED_MAIL.line())
            return
        path = self._path("FROM:", arg)
        if path is None:
            await self.push(replies.S501_MAIL_SYNTAX.line())
            return
        address, rest = path
        if address is None:
            await self.push(replies.S553_BAD_SENDER.line())
            return
        if rest and not self.session.extended_smtp:
            await self.push(replies.S501_MAIL_SYNTAX.line())
            return
        options = rest.upper().split()
        params = self._getparams(options)
        if params is None:
            await self.push(replies.S501_MAIL_SYNTAX.line())
            return
        body = params.pop("BODY", None)
        if body is not None and body not in ("7BIT", "8BITMIME"):
            await self.push(replies.S501_BAD_BODY.line())
            return
        smtputf8 = params.pop("SMTPUTF8", False)
        if smtputf8 is not True and smtputf8 is not False:
            await self.push(replies.S501_SMTPUTF8_VALUE.line())
            return
        size = params.pop("SIZE", None)
        if size is not None:
            if not isinstance(size, str) or not size.isdigit() or not size.isascii():
                await self.push(replies.S501_BAD_SIZE.line())
                return
            if self.data_size_limit and int(size) > self.data_size_limit:
                await self.push(replies.S552_TOO_BIG.line())
                return
        if params:
            await self.push(replies.S555_UNKNOWN_PARAMETER.line())
            return
        if not address.isascii() and not smtputf8:
            await self.push(replies.S553_UTF8_NOT_DECLARED.line())
            return
        self.envelope.smtp_utf8 = smtputf8
        self.envelope.body = body if isinstance(body, str) else None
        if await self._faulted("mail", address):
            return
        await self.push(await self._call_handler_hook("MAIL", address, options))

    async def smtp_RCPT(self, arg: str | None) -> None:
        assert self.session is not None and self.envelope is not None
        if await self._helo_needed():
            return
        if not self.envelope.mail_from:
            await self.push(replies.S503_NEED_MAIL.line())
            return
        path = self._path("TO:", arg)
        if path is None:
            await self.push(replies.S501_RCPT_SYNTAX.line())
            return
        address, rest = path
        if address is None:
            await self.push(replies.S553_BAD_RECIPIENT.line())
            return
        if rest:
            # No RCPT parameters are offered (no DSN in EHLO).
            await self.push(replies.S555_UNKNOWN_PARAMETER.line())
            return
        if not address.isascii() and not self.envelope.smtp_utf8:
            await self.push(replies.S553_UTF8_NOT_DECLARED.line())
            return
        if await self._faulted("rcpt", address):
            return
        status = await self._call_handler_hook("RCPT", address, [])
        if status == _UNKNOWN_USER:
            await self._unknown_recipient(status)
            return
        await self.push(status)

    async def _unknown_recipient(self, status: str) -> None:
        """Answer a 550 5.1.1: late, once the session has had more than a few (a client
        probing for addresses), and then 421 4.7.0 and the end of the session at the
        limit. The lab's own hop has no limit (``max_unknown_recipients`` 0)."""
        limits = self._limits
        if not limits.max_unknown_recipients:
            await self.push(status)
            return
        self._unknown_recipients += 1
        if self._unknown_recipients > limits.unknown_recipients_before_delay:
            self._flush()  # the replies before this one are not held back
            await asyncio.sleep(limits.unknown_recipient_delay)
        await self.push(status)
        if self._unknown_recipients >= limits.max_unknown_recipients:
            await self._hang_up(replies.S421_TOO_MANY_UNKNOWN, linger=True)

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
            await self.push(replies.S503_NEED_RCPT.line())
            return
        if arg:
            await self.push(replies.S501_SYNTAX.line())
            return
        if await self._faulted("data"):
            return
        await self.push(replies.S354_GO_AHEAD.line())
        content = await self._read_content()
        if content is None:
            return
        if isinstance(content, Reply):
            self._new_envelope()
            await self.push(content.line())
            return
        self.envelope.content = self.envelope.original_content = content
        if await self._faulted("after-data"):
            self._new_envelope()
            return
        # The commit is ours, not the client's: the idle timer waits for it.
        if self._timeout_handle is not None:
            self._timeout_handle.cancel()
        status = await self._call_handler_hook("DATA")
        self._last_heard = self.loop.time()
        self._reset_timeout()
        self._new_envelope()
        await self.push(status)

    async def _read_content(self) -> bytes | Reply | None:
        """The message after 354, up to the lone dot: its content, or the refusal it earned
        (read to the end, nothing kept), or None when a bare LF ended the session."""
        limit = self.data_size_limit or 0
        lines: list[bytes] = []
        size = 0
        refusal: Reply | None = None
        eight_bit = False
        while True:
            line = await self._read_line()
            if not line.crlf:
                await self._hang_up(replies.S521_BARE_LF, linger=True)
                return None
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
        return b"".join(lines) if refusal is None else refusal

    async def smtp_RSET(self, arg: str | None) -> None:
        if arg:
            await self.push(replies.S501_SYNTAX.line())
            return
        self._new_envelope()
        await self.push(replies.S250_OK.line())

    async def smtp_NOOP(self, arg: str | None) -> None:
        await self.push(replies.S250_OK.line())

    async def smtp_QUIT(self, arg: str | None) -> None:
        if arg:
            await self.push(replies.S501_SYNTAX.line())
            return
        await self._hang_up(replies.S221_BYE)

    async def smtp_VRFY(self, arg: str | None) -> None:
        await self.push((replies.S252_CANNOT_VRFY if arg else replies.S501_SYNTAX).line())

    async def smtp_HELP(self, arg: str | None) -> None:
        await self.push(replies.S214_HELP.line())


def peer_host(session: Session) -> str:
    return str(session.peer[0]) if session.peer else "unknown"
