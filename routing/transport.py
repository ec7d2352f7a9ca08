"""The SMTP transport: link queues ``smtp:<SERVER>`` and ``smarthost`` out, real SMTP in.

In: pairs the categorizer put in a link queue on a server. Out: the same
pairs sent over real SMTP (aiosmtplib) to the target server's endpoint, or for
queue ``smarthost`` to the lab's outbound smarthost, one transaction per
message, on one reused connection per link. The receiving endpoint moves the
pairs to itself inside the commit that precedes its 250, so a successful send
to a server needs no write here; what the smarthost takes ends as RELAYED,
what it refuses for good is NDR'd (``routing.dsn``). A failed link goes to
Retry with its next retry time and error, like an Exchange 2003 link queue.
Frozen mail, frozen queues and servers whose outbound mail is disabled wait.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import aiosmtplib

from routing import dsn, queues
from routing.categorizer import HOP_HEADER
from stores import messages
from stores.db import Store, Tx
from stores.messages import SMARTHOST, PairState
from stores.topology import Scenario

log = logging.getLogger(__name__)

BATCH = 200
# An SMTP reply: code and text.
SMTPReply = tuple[int, str]


def link_retry_at(failed_at: float, interval: float) -> float:
    """When a link that failed is tried again."""
    return failed_at + interval


def host_port(spec: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:25`` for IPv6) as a pair; ValueError when it is not one."""
    host, sep, port = spec.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not HOST:PORT: {spec!r}")
    return host, int(port)


# The target of the smarthost link; brackets keep it apart from every server name.
OUTBOUND = "[smarthost]"


def _queue(target: str) -> str:
    """The link queue of a target: a server's ``smtp:<SERVER>``, or ``smarthost``."""
    return SMARTHOST if target == OUTBOUND else f"smtp:{target}"


# What a drain may take: not frozen, and not held by "Disable Outbound Mail".
_SENDABLE = f"{queues.UNFROZEN} AND {queues.OUTBOUND_ENABLED}"


@dataclass
class _Outgoing:
    message: str
    token: str
    mail_from: str
    rcpts: list[str]
    pair_ids: list[int]


def _due(conn: sqlite3.Connection, server: str, target: str, now: float) -> list[_Outgoing]:
    """Due pairs of one link, one ``_Outgoing`` per hop token (smarthost: per message)."""
    grouped: dict[str, _Outgoing] = {}
    for pair_id, message, rcpt, token, mail_from in conn.execute(
        "SELECT p.id, p.message, p.rcpt, p.hop_token, m.mail_from FROM pairs p"
        " JOIN messages m ON m.id = p.message WHERE p.server = ? AND p.queue = ?"
        f" AND {_SENDABLE} AND p.next_attempt <= ? ORDER BY p.next_attempt, p.id LIMIT ?",
        (server, _queue(target), now, BATCH),
    ):
        token = token or message
        out = grouped.setdefault(token, _Outgoing(message, token, mail_from, [], []))
        out.rcpts.append(rcpt)
        out.pair_ids.append(pair_id)
    return list(grouped.values())


def _raw(conn: sqlite3.Connection, message: str) -> bytes:
    return bytes(conn.execute("SELECT raw FROM messages WHERE id=?", (message,)).fetchone()[0])


class Transport:
    """One drain task per link (server, target), woken by ``kick``; target ``OUTBOUND`` is
    the server's link to the scenario's outbound smarthost."""

    def __init__(
        self,
        store: Store,
        scenario: Scenario,
        endpoint: Callable[[str], tuple[str, int]],
        local_domain: str,
    ) -> None:
        self.store = store
        self.scenario = scenario
        self.endpoint = endpoint
        self.local_domain = local_domain
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._again: set[tuple[str, str]] = set()
        self._clients: dict[tuple[str, str], aiosmtplib.SMTP] = {}

    def kick(self, server: str, target: str) -> None:
        """Drain link queue ``smtp:<target>`` of ``server`` (``OUTBOUND``: its smarthost)."""
        link = (server, target)
        task = self._tasks.get(link)
        if task is not None and not task.done():
            self._again.add(link)
            return
        self._tasks[link] = asyncio.get_running_loop().create_task(self._drain(link))

    async def idle(self) -> None:
        """Wait until no link is draining."""
        while running := [t for t in self._tasks.values() if not t.done()]:
            await asyncio.gather(*running, return_exceptions=True)

    async def _drain(self, link: tuple[str, str]) -> None:
        server, target = link
        sent: set[int] = set()
        while True:
            self._again.discard(link)
            due = partial(_due, server=server, target=target, now=self.store.clock.now())
            batch = await self.store.read(due)
            if not batch:
                if link in self._again:
                    continue
                return
            for out in batch:
                if sent.intersection(out.pair_ids):
                    # The peer said 250 but the pairs are still ours: never loop on it.
                    await self._failed(link, out, "peer accepted the message but did not take it")
                    return
                try:
                    if target == OUTBOUND:
                        await self._relay_out(link, out)
                    else:
                        await self._send(link, out)
                except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                    await self._close(link)
                    await self._failed(link, out, f"{type(exc).__name__}: {exc}")
                    return
                sent.update(out.pair_ids)
            await self.store.write(lambda tx: _link_ok(tx, server, target))

    async def _client(self, link: tuple[str, str]) -> aiosmtplib.SMTP:
        client = self._clients.get(link)
        if client is not None and client.is_connected:
            return client
        if link[1] == OUTBOUND:
            host, port = host_port(self.scenario.smarthost)
        else:
            host, port = self.endpoint(link[1])
        client = aiosmtplib.SMTP(
            hostname=host,
            port=port,
            local_hostname=f"{link[0]}.{self.local_domain}",
            start_tls=False,
            timeout=30,
        )
        await client.connect()
        self._clients[link] = client
        return client

    async def _send(self, link: tuple[str, str], out: _Outgoing) -> None:
        raw = await self.store.read(lambda c: _raw(c, out.message))
        client = await self._client(link)
        header = HOP_HEADER + b": " + out.token.encode() + b"\r\n"
        # An address in UTF-8 (RFC 6531) is only sent with SMTPUTF8, which the peer offers.
        utf8 = not (out.mail_from + "".join(out.rcpts)).isascii()
        await client.sendmail(out.mail_from, out.rcpts, header + raw,
                              mail_options=["SMTPUTF8"] if utf8 else [])

    async def _relay_out(self, link: tuple[str, str], out: _Outgoing) -> None:
        refused = await self._send_out(link, out)
        await self.store.write(lambda tx: _outbound_done(tx, self.scenario, link[0], out, refused))

    async def _send_out(self, link: tuple[str, str], out: _Outgoing) -> dict[str, SMTPReply]:
        """Send one message to the smarthost; returns the recipients it refused. A refusal
        of the sender or the data with a 5xx is a refusal of every recipient; a 4xx or a
        broken connection raises, and the link retries."""
        raw = await self.store.read(lambda c: _raw(c, out.message))
        client = await self._client(link)
        utf8 = not (out.mail_from + "".join(out.rcpts)).isascii()
        try:
            refused, _ = await client.sendmail(out.mail_from, out.rcpts, raw,
                                               mail_options=["SMTPUTF8"] if utf8 else [])
        except aiosmtplib.SMTPRecipientsRefused as exc:
            return {r.recipient: (r.code, r.message) for r in exc.recipients}
        except (aiosmtplib.SMTPSenderRefused, aiosmtplib.SMTPDataError) as exc:
            if exc.code < 500:
                raise
            return dict.fromkeys(out.rcpts, (exc.code, exc.message))
        return {rcpt: (reply.code, reply.message) for rcpt, reply in refused.items()}

    async def _failed(self, link: tuple[str, str], out: _Outgoing, error: str) -> None:
        server, target = link
        interval = self.scenario.defaults.link_retry_seconds
        log.info("link %s -> %s failed: %s", server, target, error)
        await self.store.write(lambda tx: _link_failed(tx, server, target, out, error, interval))

    async def _close(self, link: tuple[str, str]) -> None:
        client = self._clients.pop(link, None)
        if client is not None and client.is_connected:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                client.close()

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        for link in list(self._clients):
            await self._close(link)


def _outbound_done(tx: Tx, scenario: Scenario, server: str, out: _Outgoing,
                   refused: dict[str, SMTPReply]) -> None:
    """The smarthost answered: what it took is RELAYED, what it refused for good is NDR'd,
    a recipient it refused for now waits for the link's next retry."""
    at = scenario.server(server)
    marks = ",".join("?" * len(out.pair_ids))
    pairs = messages.load(tx.conn, f"p.server = ? AND p.queue = ? AND p.id IN ({marks})",
                          (server, SMARTHOST, *out.pair_ids))
    failed: dict[SMTPReply, list[messages.Pair]] = {}
    for pair in pairs:
        reply = refused.get(pair.rcpt)
        if reply is None:
            messages.place_final(tx, pair, PairState.RELAYED)
            tx.trace(pair.message, pair.rcpt, server, "relayed",
                     f"to the smarthost {scenario.smarthost} over SMTP")
        elif reply[0] >= 500:
            failed.setdefault(reply, []).append(pair)
        else:
            retry_at = link_retry_at(tx.now, scenario.defaults.link_retry_seconds)
            messages.place_queued(tx, pair, server, SMARTHOST, next_attempt=retry_at,
                                  last_error=f"{reply[0]} {reply[1]}", count_attempt=True)
            tx.trace(pair.message, pair.rcpt, server, "retry",
                     f"the smarthost answered {reply[0]} {reply[1]}")
    for (code, text), group in failed.items():
        dsn.fail(tx, scenario, group, at, dsn.refused_by_smarthost(code, text))
    _link_ok(tx, server, OUTBOUND)


def _link_failed(
    tx: Tx, server: str, target: str, out: _Outgoing, error: str, interval: float
) -> None:
    queue = _queue(target)
    retry_at = link_retry_at(tx.now, interval)
    # Only pairs still waiting here: the peer may have taken them before the link broke.
    tx.conn.execute(
        f"UPDATE pairs SET attempts = attempts + 1, next_attempt = ?, last_error = ?"
        f" WHERE server = ? AND queue = ? AND id IN ({','.join('?' * len(out.pair_ids))})",
        (retry_at, error, server, queue, *out.pair_ids),
    )
    # The whole link waits for its retry, as an Exchange link queue in Retry does.
    tx.conn.execute(
        "UPDATE pairs SET next_attempt = MAX(COALESCE(next_attempt, 0), ?)"
        " WHERE server = ? AND queue = ?",
        (retry_at, server, queue),
    )
    if queues.status(tx.conn, server, queue) != queues.QueueStatus.FROZEN:
        queues.set_status(
            tx.conn, server, queue, queues.QueueStatus.RETRY, next_retry=retry_at, last_error=error
        )


def _link_ok(tx: Tx, server: str, target: str) -> None:
    queue = _queue(target)
    if queues.status(tx.conn, server, queue) == queues.QueueStatus.RETRY:
        queues.set_status(tx.conn, server, queue, queues.QueueStatus.READY)


def due_links(conn: sqlite3.Connection, now: float) -> list[tuple[str, str]]:
    """Links holding pairs whose attempt has fallen due (for the lab's scheduler); the
    smarthost link of a server is ``(server, OUTBOUND)``."""
    return [
        (r[0], OUTBOUND if r[1] == SMARTHOST else r[1].split(":", 1)[1])
        for r in conn.execute(
            f"SELECT DISTINCT server, queue FROM pairs p WHERE {queues.OUTBOUND}"
            f" AND {_SENDABLE} AND next_attempt <= ?",
            (now,),
        )
    ]

