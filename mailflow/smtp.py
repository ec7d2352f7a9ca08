"""SMTP endpoints, one per emulated server: SMTP in, a ``Submission`` handed to routing out.

This module only speaks the protocol (aiosmtpd on the lab's own event loop):
it checks syntax and limits and turns the router's verdicts into named
replies. What a recipient is, and what becomes of a message, is the router's
business. DATA is answered 250 only after the router has committed the
message, and the reply names its queue id.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, AnyStr, Protocol

from aiosmtpd.smtp import SMTP, Envelope, Session

from mailflow import replies
from routing.categorizer import Submission, Verdict
from stores.topology import Server

log = logging.getLogger(__name__)

# What a 5.5/2000/2003 server said in its banner, marked as an emulation.
BANNERS = {
    "5.5": "Microsoft Exchange Internet Mail Service 5.5 (mailflow emulation) ready",
    "2000": "Microsoft ESMTP MAIL Service, Version: 5.0.2195 (mailflow emulation) ready",
    "2003": "Microsoft ESMTP MAIL Service, Version: 6.0.3790 (mailflow emulation) ready",
}
DEFAULT_BANNER = "Microsoft ESMTP MAIL Service (mailflow emulation) ready"


class Router(Protocol):
    def valid_sender(self, address: str) -> bool: ...

    def check_recipient(self, address: str) -> Verdict: ...

    def accept(self, submission: Submission) -> Awaitable[str]: ...


_VERDICT_REPLIES = {
    Verdict.BAD_SYNTAX: replies.S553_BAD_RECIPIENT,
    Verdict.RELAY_DENIED: replies.S550_RELAY_DENIED,
    Verdict.UNKNOWN_USER: replies.S550_UNKNOWN_USER,
}


@dataclass(frozen=True)
class Limits:
    max_message_size: int
    max_recipients: int
    idle_timeout: float = 300.0


class _Handler:
    def __init__(self, server: Server, router: Router, limits: Limits) -> None:
        self.server = server
        self.router = router
        self.limits = limits

    async def handle_MAIL(
        self, _: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        # The null sender stays "<>" here: aiosmtpd reads an empty mail_from as "no MAIL yet".
        if address != "<>" and not self.router.valid_sender(address):
            return replies.S553_BAD_SENDER
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return replies.S250_SENDER_OK

    async def handle_RCPT(
        self, _: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= self.limits.max_recipients:
            return replies.S452_TOO_MANY_RECIPIENTS
        verdict = self.router.check_recipient(address)
        if verdict is not Verdict.OK:
            return _VERDICT_REPLIES[verdict]
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return replies.S250_RECIPIENT_OK

    async def handle_DATA(self, _: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.original_content, bytes)
        submission = Submission(
            server=self.server.name,
            peer=str(session.peer[0]) if session.peer else "unknown",
            helo=session.host_name or "",
            mail_from="" if envelope.mail_from == "<>" else envelope.mail_from or "",
            rcpts=tuple(envelope.rcpt_tos),
            data=envelope.original_content,
        )
        try:
            queue_id = await self.router.accept(submission)
        except Exception:
            # Nothing was committed: the client keeps the message and tries again.
            log.exception("accepting a message on %s failed", self.server.name)
            return replies.S451_LOCAL_ERROR
        return replies.S250_QUEUED.format(queue_id=queue_id)


class _Session(SMTP):
    """aiosmtpd's protocol, reporting every 4xx/5xx reply it sends."""

    def __init__(self, on_reject: Callable[[int], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._on_reject = on_reject

    async def push(self, status: AnyStr) -> None:
        code = status[:3] if isinstance(status, str) else status[:3].decode("ascii", "replace")
        if code[:1] in ("4", "5") and code.isdigit():
            self._on_reject(int(code))
        await super().push(status)


class Endpoint:
    """The SMTP listener of one emulated server."""

    def __init__(
        self,
        server: Server,
        router: Router,
        limits: Limits,
        domain: str,
        on_reject: Callable[[str, int], None],
    ) -> None:
        self.server = server
        self.handler = _Handler(server, router, limits)
        self.limits = limits
        self.hostname = f"{server.name}.{domain}"
        self.on_reject = on_reject
        self._listener: asyncio.Server | None = None
        self._sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()
        self.host = ""
        self.port = 0

    def _protocol(self) -> SMTP:
        session = _Session(
            lambda code: self.on_reject(self.server.name, code),
            handler=self.handler,
            hostname=self.hostname,
            ident=BANNERS.get(self.server.version, DEFAULT_BANNER),
            data_size_limit=self.limits.max_message_size,
            timeout=self.limits.idle_timeout,
        )
        self._sessions.add(session)
        return session

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(self._protocol, host, port)
        self.host, self.port = self._listener.sockets[0].getsockname()[:2]

    async def stop(self) -> None:
        if self._listener is None:
            return
        self._listener.close()
        # Drop clients still connected, or wait_closed() would wait for them (3.12+).
        for session in list(self._sessions):
            if session.transport is not None:
                session.transport.close()
        await self._listener.wait_closed()
        self._listener = None
