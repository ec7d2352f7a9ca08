"""SMTP endpoints, one per emulated server: SMTP in, a ``Submission`` handed to routing out.

This module only speaks the protocol (on aiosmtpd's transport, on the lab's
own event loop): it reads command and text lines, checks syntax and limits,
and turns the router's verdicts into named replies (``mailflow.smtp.replies``).
What a recipient is, and what becomes of a message, is the router's
business. DATA is answered 250 only after the router has committed the
message, and the reply names its queue id.

Hostile input is answered here, before anything reaches the router: lines
over the RFC 5321 limits, NUL, bare LF (the session ends: SMTP smuggling),
8-bit data that was not declared, undeclared UTF-8 addresses, control
characters in HELO/EHLO, paths that are not RFC 5321 paths, an idle
client, too many errors, too many unknown recipients (address probing),
too many connections. A message over the size
limit is read to its end and dropped line by line, never held whole.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Protocol

from aiosmtpd.smtp import SMTP, Envelope, Session

from mailflow.smtp import replies
from mailflow.smtp.auth import Authenticator
from mailflow.smtp.connection import Gate
from mailflow.smtp.session import Limits, SmtpSession, peer_host
from routing.categorizer import Submission, Verdict
from stores.backend import StoreFull
from stores.topology import Server, Version

log = logging.getLogger(__name__)

# What a 5.5/2000/2003 server said in its banner, marked as an emulation.
BANNERS = {
    Version.V55: "Microsoft Exchange Internet Mail Service 5.5 (mailflow emulation) ready",
    Version.V2000: "Microsoft ESMTP MAIL Service, Version: 5.0.2195 (mailflow emulation) ready",
    Version.V2003: "Microsoft ESMTP MAIL Service, Version: 6.0.3790 (mailflow emulation) ready",
}
DEFAULT_BANNER = "Microsoft ESMTP MAIL Service (mailflow emulation) ready"


class Router(Protocol):
    def valid_sender(self, address: str) -> bool: ...

    def check_recipient(self, address: str, peer: str) -> Verdict: ...

    def accept(self, submission: Submission) -> Awaitable[str]: ...


_VERDICT_REPLIES = {
    Verdict.BAD_SYNTAX: replies.S553_BAD_RECIPIENT,
    Verdict.RELAY_DENIED: replies.S550_RELAY_DENIED,
    Verdict.UNKNOWN_USER: replies.S550_UNKNOWN_USER,
}


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
            return replies.S553_BAD_SENDER.line()
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return replies.S250_SENDER_OK.line()

    async def handle_RCPT(
        self, _: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= self.limits.max_recipients:
            return replies.S452_TOO_MANY_RECIPIENTS.line()
        verdict = self.router.check_recipient(address, peer_host(session))
        if verdict is not Verdict.OK:
            return _VERDICT_REPLIES[verdict].line()
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return replies.S250_RECIPIENT_OK.line()

    async def handle_DATA(self, _: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.original_content, bytes)
        submission = Submission(
            server=self.server.name,
            peer=peer_host(session),
            helo=session.host_name or "",
            mail_from="" if envelope.mail_from == "<>" else envelope.mail_from or "",
            rcpts=tuple(envelope.rcpt_tos),
            data=envelope.original_content,
        )
        try:
            queue_id = await self.router.accept(submission)
        except StoreFull:
            log.error("accepting a message on %s: the store's disk is full", self.server.name)
            return replies.S452_STORAGE_FULL.line()
        except Exception:
            # Nothing was committed: the client keeps the message and tries again.
            log.exception("accepting a message on %s failed", self.server.name)
            return replies.S451_LOCAL_ERROR.line()
        return replies.S250_QUEUED.line(queue_id=queue_id)


class _Refuse(asyncio.Protocol):
    """A connection over the endpoint's limit: 421 4.3.2, then close (RFC 5321 §3.1)."""

    def __init__(self, reply: str, on_reject: Callable[[int], None]) -> None:
        self.reply = reply
        self.on_reject = on_reject

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        self.on_reject(421)
        transport.write(self.reply.encode() + b"\r\n")
        transport.close()


class _Door:
    """One listening socket of an endpoint and the sessions it let in, each door with
    its own budget of ``limits.max_connections`` sessions, and what its sessions offer
    (STARTTLS, AUTH: aiosmtpd's keyword arguments)."""

    def __init__(self, limits: Limits, offers: dict[str, Any]) -> None:
        self.limits = limits
        self.offers = offers
        self.listener: asyncio.Server | None = None
        self.sessions: set[SmtpSession] = set()
        self.host = ""
        self.port = 0


def loopback(host: str) -> str:
    """The loopback address of the family of ``host`` (an IP address or a name)."""
    return "::1" if ":" in host else "127.0.0.1"


class Endpoint:
    """The SMTP listener of one emulated server: its public port, for clients, and its
    hop port, on loopback, for the lab's own transport only (``hop_address``; in a lab of
    several processes on the listen address, published to the others in the store). Clients
    that hold every public slot (idle, unauthenticated) cannot push the lab's own links
    into Retry: the hop port has a budget of its own, is published nowhere (not in
    lab.json, not in the API), and its sessions are not limited as address probes.

    With a ``tls`` context the public port offers STARTTLS, and AUTH as the server's
    ``security`` says. The hop port offers neither AUTH (its mail proves itself by the
    signed hop token) nor, being loopback only, STARTTLS, except on a server with
    ``require_tls``, where it requires it too (docs/tls-and-auth.md)."""

    def __init__(
        self,
        server: Server,
        router: Router,
        limits: Limits,
        domain: str,
        on_reject: Callable[[str, int], None],
        tls: ssl.SSLContext | None = None,
        logins: tuple[tuple[str, str], ...] = (),
        gate: Gate | None = None,
    ) -> None:
        self.server = server
        # Fault rules strike on the public port only: the lab's own hop is never faulted.
        self.gate = gate
        self.handler = _Handler(server, router, limits)
        self.limits = limits
        self.hostname = f"{server.name}.{domain}"
        self.on_reject = on_reject
        security = server.security
        public: dict[str, Any] = {"tls_context": tls, "require_starttls": security.require_tls,
                                  "auth_require_tls": not security.auth_before_tls,
                                  "auth_required": security.auth_required}
        if security.auth != "off":
            public["authenticator"] = Authenticator(security.auth, logins)
        hop_tls = tls if security.require_tls else None
        self._public = _Door(limits, public)
        self._hop = _Door(dataclasses.replace(limits, max_unknown_recipients=0),
                          {"tls_context": hop_tls, "require_starttls": security.require_tls})

    @property
    def host(self) -> str:
        return self._public.host

    @property
    def port(self) -> int:
        return self._public.port

    @property
    def hop_address(self) -> tuple[str, int]:
        """Where the lab's own transport sends to this server (not for clients)."""
        return self._hop.host, self._hop.port

    @property
    def connections(self) -> int:
        """Sessions open now on both ports (each counts until its connection is closed)."""
        return len(self._public.sessions) + len(self._hop.sessions)

    def _reject(self, code: int) -> None:
        self.on_reject(self.server.name, code)

    def _protocol(self, door: _Door) -> asyncio.Protocol:
        if len(door.sessions) >= door.limits.max_connections:
            reply = replies.S421_TOO_MANY_CONNECTIONS.line(hostname=self.hostname)
            return _Refuse(reply, self._reject)
        session = SmtpSession(
            door.limits,
            self._reject,
            door.sessions.discard,
            gate=self.gate if door is self._public else None,
            handler=self.handler,
            hostname=self.hostname,
            ident=BANNERS.get(self.server.version, DEFAULT_BANNER),
            data_size_limit=self.limits.max_message_size,
            enable_SMTPUTF8=True,
            timeout=self.limits.idle_timeout,
            **door.offers,
        )
        door.sessions.add(session)
        return session

    async def _open(self, door: _Door, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        door.listener = await loop.create_server(partial(self._protocol, door), host, port)
        door.host, door.port = door.listener.sockets[0].getsockname()[:2]

    async def start(self, host: str, port: int, *, hop_beyond_loopback: bool = False) -> None:
        """Listen on ``host``:``port`` for clients, and on a free loopback port for the hop
        (on ``host`` too when the lab's other processes, maybe on other hosts, hop here)."""
        await self._open(self._public, host, port)
        await self._open(self._hop, host if hop_beyond_loopback else loopback(host), 0)

    async def stop(self) -> None:
        for door in (self._public, self._hop):
            if door.listener is None:
                continue
            door.listener.close()
            # Say goodbye to clients still connected, or wait_closed() would wait for them
            # (3.12+).
            for session in list(door.sessions):
                session.shutdown()
            await door.listener.wait_closed()
            door.listener = None
