"""The SMTP transport between emulated servers: link queues ``smtp:<SERVER>`` out, real SMTP in.

In: pairs the categorizer put in a link queue on a server. Out: the same
pairs sent over real SMTP (aiosmtplib) to the target server's endpoint, one
transaction per message, on one reused connection per link. The receiving
endpoint moves the pairs to itself inside the commit that precedes its 250,
so a successful send needs no write here; a failed one puts the link in Retry
with its next retry time and error, like an Exchange 2003 link queue.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import aiosmtplib

from routing import queues
from routing.categorizer import HOP_HEADER
from stores.db import Store, Tx
from stores.topology import Scenario

log = logging.getLogger(__name__)

BATCH = 200


def link_retry_at(failed_at: float, interval: float) -> float:
    """When a link that failed is tried again."""
    return failed_at + interval


@dataclass
class _Outgoing:
    message: str
    token: str
    mail_from: str
    rcpts: list[str]
    pair_ids: list[int]


def _due(conn: sqlite3.Connection, server: str, target: str, now: float) -> list[_Outgoing]:
    grouped: dict[str, _Outgoing] = {}
    for pair_id, message, rcpt, token, mail_from in conn.execute(
        "SELECT p.id, p.message, p.rcpt, p.hop_token, m.mail_from FROM pairs p"
        " JOIN messages m ON m.id = p.message WHERE p.server = ? AND p.queue = ?"
        " AND p.frozen = 0 AND p.next_attempt <= ? ORDER BY p.next_attempt, p.id LIMIT ?",
        (server, f"smtp:{target}", now, BATCH),
    ):
        out = grouped.setdefault(token, _Outgoing(message, token, mail_from, [], []))
        out.rcpts.append(rcpt)
        out.pair_ids.append(pair_id)
    return list(grouped.values())


def _raw(conn: sqlite3.Connection, message: str) -> bytes:
    return bytes(conn.execute("SELECT raw FROM messages WHERE id=?", (message,)).fetchone()[0])


class Transport:
    """One drain task per link (server, target), woken by ``kick``."""

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


def _link_failed(
    tx: Tx, server: str, target: str, out: _Outgoing, error: str, interval: float
) -> None:
    queue = f"smtp:{target}"
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
    queue = f"smtp:{target}"
    if queues.status(tx.conn, server, queue) == queues.QueueStatus.RETRY:
        queues.set_status(tx.conn, server, queue, queues.QueueStatus.READY)


def due_links(conn: sqlite3.Connection, now: float) -> list[tuple[str, str]]:
    """Links holding pairs whose attempt has fallen due (for the lab's scheduler)."""
    return [
        (r[0], r[1].split(":", 1)[1])
        for r in conn.execute(
            "SELECT DISTINCT server, queue FROM pairs WHERE queue LIKE 'smtp:%'"
            " AND frozen = 0 AND next_attempt <= ?",
            (now,),
        )
    ]

