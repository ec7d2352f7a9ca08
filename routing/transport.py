"""The SMTP transport: link queues ``smtp:<SERVER>`` and ``smarthost`` out, real SMTP in.

In: pairs the categorizer put in a link queue on a server. Out: the same pairs
sent over real SMTP from the worker process of ``routing.sender`` (pipelined,
``routing.pipelining``) to the target server's endpoint, or for queue
``smarthost`` (aiosmtplib) to the lab's outbound smarthost, one transaction per
message. A link drains its due pairs in batches: one store read gives a batch's
pairs and the raw bytes of its messages, and several connections of the link
(``CONNECTIONS`` to a server, ``SMARTHOST_CONNECTIONS`` to the smarthost), kept
open from batch to batch, send disjoint slices of it at once, so that the
receiving endpoint commits many messages per fsync. The lab's scheduler learns
from ``due_links`` which links have mail due. The receiving endpoint moves the
pairs to itself inside the commit that precedes its 250 (the hop token header,
signed with the lab's secret by ``routing.hop``, makes a retransmission
harmless), so a successful send to a server needs no write here; what the
smarthost takes ends as RELAYED, what it refuses for good is NDR'd
(``routing.dsn``). When any connection of a link fails, the link stops and goes
to Retry with its next retry time and error, like an Exchange 2003 link queue;
its other connections finish their slices first. Frozen mail, frozen queues and
servers whose outbound mail is disabled wait.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from routing import categorizer, dsn, hop
from routing.pipelining import Outgoing
from routing.sender import LinkError, Sender, Slot, SMTPReply
from stores import links, messages, meta, pairs, queue_ids, queue_state
from stores.backend import Backend, Read, Tx
from stores.messages import PairState
from stores.queue_ids import SMARTHOST, QueueId
from stores.queue_state import QueueStatus
from stores.topology import Scenario

log = logging.getLogger(__name__)

T = TypeVar("T")

# Connections per link to a server of the lab. With one, every message waits for its own
# round trips and its own fsync at the peer; with many in flight, the peer's writer commits
# them together (on the 2-core bench machine 32 drained clearly faster than 8 or 16).
CONNECTIONS = 32
# Connections per link to the outbound smarthost: a real MTA, which may limit the
# connections of one client.
SMARTHOST_CONNECTIONS = 4
# Pairs per store read of a link, dealt over its connections. A link's connections wait for
# each other at the end of a batch, so a batch holds many messages per connection.
BATCH = 2048
# Bytes of raw messages one batch may hold in memory (at least one message is taken).
BATCH_BYTES = 32 * 1024 * 1024


def link_retry_at(failed_at: float, interval: float) -> float:
    """When a link that failed is tried again."""
    return failed_at + interval


def connections_per_link(peer_limit: int, senders: int) -> int:
    """Connections a link to a lab server opens: ``CONNECTIONS``, but the links of all
    ``senders`` that may relay to one server together keep at most half its session
    limit (they stay open when idle), so that clients still get in."""
    return max(1, min(CONNECTIONS, peer_limit // (2 * max(1, senders))))


def deal(items: Sequence[T], hands: int) -> list[list[T]]:
    """``items`` dealt in turn into at most ``hands`` non-empty, disjoint slices (in turn,
    so that every connection starts with the oldest mail)."""
    return [list(items[i::hands]) for i in range(min(hands, len(items)))]


def host_port(spec: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:25`` for IPv6) as a pair; ValueError when it is not one."""
    host, sep, port = spec.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not HOST:PORT: {spec!r}")
    return host, int(port)


# The target of the smarthost link; brackets keep it apart from every server name.
OUTBOUND = "[smarthost]"


def _queue(target: str) -> QueueId:
    """The link queue of a target: a server's ``smtp:<SERVER>``, or ``smarthost``."""
    return SMARTHOST if target == OUTBOUND else queue_ids.link(target)


def _target(queue: str) -> str:
    """The target of a link queue: the inverse of ``_queue``."""
    return OUTBOUND if queue == SMARTHOST else queue_ids.parse(queue).target

# One link: (server, target).
Link = tuple[str, str]


@dataclass
class _Outgoing:
    message: str
    token: str
    mail_from: str
    rcpts: list[str]
    pair_ids: list[int]


@dataclass
class _Batch:
    outs: list[_Outgoing]
    raw: dict[str, bytes]  # message id -> raw bytes
    retrying: bool  # the link queue is in Retry: a batch sent in full makes it Ready


def _due(db: Read, server: str, target: str, now: float) -> _Batch:
    """Due pairs of one link, one ``_Outgoing`` per hop token (smarthost: per message),
    with the raw bytes of their messages."""
    queue = _queue(target)
    grouped: dict[str, _Outgoing] = {}
    size = 0
    for pair_id, message, rcpt, token, mail_from, message_size in links.due(
        db, server, queue, now, BATCH
    ):
        token = token or message
        out = grouped.get(token)
        if out is None:
            if grouped and size + message_size > BATCH_BYTES:
                break
            size += message_size
            out = grouped[token] = _Outgoing(message, token, mail_from, [], [])
        out.rcpts.append(rcpt)
        out.pair_ids.append(pair_id)
    raw = links.raws(db, list({out.message for out in grouped.values()}))
    retrying = queue_state.status(db, server, queue) == QueueStatus.RETRY
    return _Batch(list(grouped.values()), raw, retrying)


class Transport:
    """One drain task per link (server, target), woken by ``kick``; target ``OUTBOUND`` is
    the server's link to the scenario's outbound smarthost."""

    def __init__(
        self,
        store: Backend,
        scenario: Scenario,
        endpoint: Callable[[str], Awaitable[tuple[str, int]]],
        local_domain: str,
    ) -> None:
        self.store = store
        self.scenario = scenario
        self.endpoint = endpoint
        self.local_domain = local_domain
        self._tasks: dict[Link, asyncio.Task[None]] = {}
        self._again: set[Link] = set()
        self._hop_key: bytes | None = None
        self.sender = Sender()

    async def start(self) -> None:
        """Read (on a first start, make) the lab's hop secret, and start the sender's
        worker now, so that the first link to drain need not wait for it (it comes up on
        another core while the lab serves)."""
        await self.hop_key()
        await self.sender.start()

    async def hop_key(self) -> bytes:
        """The lab's secret that signs the hop tokens this transport sends, from the store
        (made there on first use, so a restarted lab signs as it did)."""
        if self._hop_key is None:
            self._hop_key = await self.store.write(meta.hop_secret)
        return self._hop_key

    def kick(self, server: str, target: str) -> None:
        """Drain link queue ``smtp:<target>`` of ``server`` (``OUTBOUND``: its smarthost)."""
        link = (server, target)
        task = self._tasks.get(link)
        if task is not None and not task.done():
            self._again.add(link)
            return
        self._tasks[link] = asyncio.get_running_loop().create_task(self._drain(link))

    def busy(self) -> bool:
        """Whether a link is draining."""
        return any(not t.done() for t in self._tasks.values())

    async def idle(self) -> None:
        """Wait until no link is draining."""
        while running := [t for t in self._tasks.values() if not t.done()]:
            await asyncio.gather(*running, return_exceptions=True)

    async def _drain(self, link: Link) -> None:
        server, target = link
        sent: set[int] = set()
        while True:
            self._again.discard(link)
            due = partial(_due, server=server, target=target, now=self.store.clock.now())
            batch = await self.store.read(due)
            if not batch.outs:
                if link in self._again:
                    continue
                return
            looping = next((out for out in batch.outs if sent.intersection(out.pair_ids)), None)
            if looping is not None:
                # The peer said 250 but the pairs are still ours: never loop on it.
                await self._failed(
                    link, [(looping, "peer accepted the message but did not take it")]
                )
                return
            try:
                address = (host_port(self.scenario.smarthost) if target == OUTBOUND
                           else await self.endpoint(target))
                # One connection first: a peer that is down costs one refused connect, and
                # one message's attempt, not one per connection.
                async for _ in self._send_on((*link, 0), address, []):
                    pass
            except LinkError as exc:
                await self._failed(link, [(batch.outs[0], str(exc))])
                return
            failures: list[tuple[_Outgoing, str]] = []
            async with asyncio.TaskGroup() as group:
                for slot, outs in enumerate(deal(batch.outs, self._connections(target))):
                    group.create_task(self._send_slice((*link, slot), address, outs, batch.raw,
                                                       failures))
            if failures:
                await self._failed(link, failures)
                return
            sent.update(pair_id for out in batch.outs for pair_id in out.pair_ids)
            if batch.retrying:
                await self.store.write(lambda tx: _link_ok(tx, server, target))

    def _connections(self, target: str) -> int:
        if target == OUTBOUND:
            return SMARTHOST_CONNECTIONS
        return connections_per_link(self.scenario.defaults.smtp_max_connections,
                                    len(self.scenario.servers) - 1)

    async def _send_slice(self, slot: Slot, address: tuple[str, int], outs: list[_Outgoing],
                          raw: dict[str, bytes], failures: list[tuple[_Outgoing, str]]) -> None:
        """Send ``outs`` one after the other on connection ``slot``; a failure is added to
        ``failures``. What the smarthost answers is written as each message is sent."""
        server, target, _ = slot
        # A link may drain before ``start`` has read the key: the endpoints open first.
        key = await self.hop_key()
        outgoing: list[Outgoing] = []
        for out in outs:
            data = raw[out.message]
            if target != OUTBOUND:
                data = hop.header(key, out.token, target) + data
            outgoing.append((out.mail_from, out.rcpts, data))
        try:
            async for index, refused in self._send_on(slot, address, outgoing):
                await self.store.write(partial(_outbound_done, scenario=self.scenario,
                                               server=server, out=outs[index], refused=refused))
        except LinkError as exc:
            failures.append((outs[exc.index], str(exc)))

    def _send_on(self, slot: Slot, address: tuple[str, int], outgoing: list[Outgoing]
                 ) -> AsyncIterator[tuple[int, dict[str, SMTPReply]]]:
        """The sender's replies to ``outgoing`` on ``slot``, to ``address``: one per message
        for the smarthost, none (only the end) for a server of the lab."""
        server, target, _ = slot
        smarthost = target == OUTBOUND
        return self.sender.send(slot, address, f"{server}.{self.local_domain}", outgoing,
                                 smarthost=smarthost, tls=self.scenario.smarthost_tls)

    async def _failed(self, link: Link, failures: list[tuple[_Outgoing, str]]) -> None:
        server, target = link
        interval = self.scenario.defaults.link_retry_seconds
        log.info("link %s -> %s failed: %s", server, target, failures[0][1])
        await self.store.write(lambda tx: _link_failed(tx, server, target, failures, interval))

    async def close(self) -> None:
        """Stop every drain, then the sender and its connections."""
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        await self.sender.close()


def _outbound_done(tx: Tx, *, scenario: Scenario, server: str, out: _Outgoing,
                   refused: dict[str, SMTPReply]) -> None:
    """The smarthost answered: what it took is RELAYED, what it refused for good is NDR'd,
    a recipient it refused for now waits for the link's next retry."""
    at = scenario.server(server)
    failed: dict[SMTPReply, list[messages.Pair]] = {}
    for pair in pairs.in_queue(tx, server, SMARTHOST, out.pair_ids):
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
        categorizer.fail(tx, scenario, group, at, dsn.refused_by_smarthost(code, text))
    _link_ok(tx, server, OUTBOUND)


def _link_failed(tx: Tx, server: str, target: str, failures: list[tuple[_Outgoing, str]],
                 interval: float) -> None:
    queue = _queue(target)
    retry_at = link_retry_at(tx.now, interval)
    for out, error in failures:
        # Only pairs still waiting here: the peer may have taken them before the link broke.
        links.postpone(tx, server, queue, out.pair_ids, retry_at, error)
    links.hold(tx, server, queue, retry_at)
    if queue_state.status(tx, server, queue) != QueueStatus.FROZEN:
        queue_state.set_status(tx, server, queue, QueueStatus.RETRY, next_retry=retry_at,
                               last_error=failures[0][1])


def _link_ok(tx: Tx, server: str, target: str) -> None:
    queue = _queue(target)
    if queue_state.status(tx, server, queue) == QueueStatus.RETRY:
        queue_state.set_status(tx, server, queue, QueueStatus.READY)


def due_links(db: Read, scenario: Scenario, now: float,
              servers: Iterable[str] | None = None) -> list[Link]:
    """Links of ``servers`` (default: the scenario's) holding pairs whose attempt has fallen
    due (for the lab's scheduler); the smarthost link of a server is ``(server, OUTBOUND)``."""
    names = servers if servers is not None else (s.name for s in scenario.servers)
    return [
        (server, _target(queue))
        for server, queue in queue_state.due_queues(db, names, now,
                                                    queue_ids.is_outbound, sendable=True)
    ]
