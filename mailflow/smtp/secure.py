"""STARTTLS (RFC 3207) and AUTH (RFC 4954) of a session, on aiosmtpd's own support.

In: the STARTTLS and AUTH command lines of a session whose endpoint was given a
``tls_context`` and an ``authenticator`` (``mailflow.smtp.endpoint``). Out: aiosmtpd's
handshake and its PLAIN and LOGIN exchanges, after the checks answered here with named
replies: STARTTLS once, AUTH after EHLO, outside a transaction, once, and over TLS unless
the server allows it in plain text (538 5.7.11). With ``require_tls`` only NOOP, EHLO,
STARTTLS and QUIT come before STARTTLS (530 5.7.0); with ``auth_required``, MAIL, RCPT,
DATA and VRFY only after AUTH (530 5.7.0).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiosmtpd.smtp import ALLOWED_BEFORE_STARTTLS, TLSSetupException

from mailflow.smtp import replies
from mailflow.smtp.auth import MECHANISMS
from mailflow.smtp.connection import SmtpConnection
from mailflow.smtp.replies import Reply

log = logging.getLogger(__name__)

# What a session with ``auth_required`` answers 530 until the client authenticated.
NEEDS_AUTH = frozenset({"MAIL", "RCPT", "DATA", "VRFY"})


class SecureConnection(SmtpConnection):
    """A connection that may offer STARTTLS and AUTH (aiosmtpd's ``tls_context``,
    ``require_starttls``, ``auth_require_tls`` and ``authenticator``)."""

    def __init__(self, *args: Any, auth_required: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._needs_auth = auth_required

    @property
    def tls_active(self) -> bool:
        return self._tls_protocol is not None

    @property
    def auth_offered(self) -> bool:
        return self._authenticator is not None

    def secure_commands(self) -> dict[str, Callable[[str | None], Awaitable[None]]]:
        """The verbs this connection adds to the session's, when its endpoint offers them."""
        commands: dict[str, Callable[[str | None], Awaitable[None]]] = {}
        if self.tls_context is not None:
            commands["STARTTLS"] = self.smtp_STARTTLS
        if self.auth_offered:
            commands["AUTH"] = self.smtp_AUTH
        return commands

    def ehlo_keywords(self) -> list[str]:
        """The EHLO lines for STARTTLS (until it ran) and AUTH (where it may be used)."""
        lines = []
        if self.tls_context is not None and not self.tls_active:
            lines.append("STARTTLS")
        if self.auth_offered and (self.tls_active or not self._auth_require_tls):
            lines.append("AUTH " + " ".join(MECHANISMS))
        return lines

    def _refusal(self, verb: str) -> Reply | None:
        if self.require_starttls and not self.tls_active and verb not in ALLOWED_BEFORE_STARTTLS:
            return replies.S530_STARTTLS_FIRST
        assert self.session is not None
        if self._needs_auth and verb in NEEDS_AUTH and not self.session.authenticated:
            return replies.S530_AUTH_REQUIRED
        return None

    async def smtp_STARTTLS(self, arg: str | None) -> None:
        if arg:
            await self.push(replies.S501_SYNTAX.line())
            return
        if self.tls_active:
            await self.push(replies.S503_TLS_ACTIVE.line())
            return
        # aiosmtpd's 220 must leave before the handshake takes over the transport.
        self._flush()
        self._write_now = True
        try:
            await super().smtp_STARTTLS("")
        except TLSSetupException as exc:
            # Nothing can be said any more: the TLS layer is dead. As aiosmtpd does, close
            # the socket and end the session (the TLS layer will not tell it).
            log.info("%s: TLS handshake with %r failed: %s", self.hostname,
                     self.session and self.session.peer, exc.__cause__)
            self._hanging_up = True
            self._unsent.clear()
            if self._original_transport is not None:
                self._original_transport.close()
            self.connection_lost(exc)
        finally:
            self._write_now = False

    async def smtp_AUTH(self, arg: str | None) -> None:
        assert self.session is not None and self.envelope is not None
        reply = self._auth_refusal(arg)
        if reply is not None:
            await self.push(reply.line())
            return
        assert arg is not None
        mechanism, _, rest = arg.partition(" ")
        # RFC 4954 §4: mechanism names are case-insensitive; aiosmtpd's keys are upper case.
        await super().smtp_AUTH(f"{mechanism.upper()} {rest}".strip())

    def _auth_refusal(self, arg: str | None) -> Reply | None:
        assert self.session is not None and self.envelope is not None
        if not self.session.host_name or not self.session.extended_smtp:
            return replies.S503_HELO_FIRST
        if self._auth_require_tls and not self.tls_active:
            return replies.S538_ENCRYPTION_REQUIRED
        if self.session.authenticated:
            return replies.S503_ALREADY_AUTHENTICATED
        if self.envelope.mail_from:
            return replies.S503_AUTH_IN_TRANSACTION
        if not arg:
            return replies.S501_SYNTAX
        if arg.split(" ", 1)[0].upper() not in MECHANISMS:
            return replies.S504_UNKNOWN_MECHANISM
        return None
