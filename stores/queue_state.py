"""Queue state in the store: the queue machine, "Disable Outbound Mail", and queue seeks.

In: a connection (``Tx`` or ``Read``), servers and queue ids. Out: each queue's
status (Ready, Active, Retry, Frozen; ``queue_state``), the per-server outbound
switch (``outbound_disabled``), the non-empty queues of servers found by index
seeks (``queue_keys``), those with mail due (``due_queues``), and what the
queue listing shows of one queue (``stats``). The conditions every drain puts
on its pairs (``UNFROZEN``, ``SENDABLE``) are written here only.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from typing import NamedTuple

from stores.backend import Conn
from stores.machine import Machine
from stores.queue_ids import LINK_PREFIX, SMARTHOST, QueueId, identity


class QueueStatus(enum.StrEnum):
    READY = "Ready"
    ACTIVE = "Active"
    RETRY = "Retry"
    FROZEN = "Frozen"


TRANSITIONS: dict[QueueStatus, frozenset[QueueStatus]] = {
    QueueStatus.READY: frozenset({QueueStatus.ACTIVE, QueueStatus.RETRY, QueueStatus.FROZEN}),
    QueueStatus.ACTIVE: frozenset({QueueStatus.READY, QueueStatus.RETRY, QueueStatus.FROZEN}),
    QueueStatus.RETRY: frozenset(
        {QueueStatus.RETRY, QueueStatus.ACTIVE, QueueStatus.READY, QueueStatus.FROZEN}
    ),
    QueueStatus.FROZEN: frozenset({QueueStatus.READY}),
}
QUEUES = Machine.of_targets("queue", TRANSITIONS)

# What every drain adds to its query of pairs ``p``: a frozen message, or any message of a
# frozen queue, stays where it is until it is thawed.
UNFROZEN = (
    "p.frozen = 0 AND NOT EXISTS (SELECT 1 FROM queue_state fq WHERE fq.server = p.server"
    " AND fq.queue = p.queue AND fq.status = 'Frozen')"
)
# Link queues that "Disable Outbound Mail" holds: SMTP to other servers and the smarthost.
_OUTBOUND = f"(p.queue LIKE '{LINK_PREFIX}%' OR p.queue = '{SMARTHOST}')"
_OUTBOUND_ENABLED = (
    f"NOT ({_OUTBOUND} AND EXISTS (SELECT 1 FROM outbound_disabled od"
    " WHERE od.server = p.server))"
)
# What a link drain may take: not frozen, and not held by "Disable Outbound Mail".
SENDABLE = f"{UNFROZEN} AND {_OUTBOUND_ENABLED}"
# Pairs ``p`` whose mailbox is not in transit on their server: what a flush may release.
NOT_IN_TRANSIT = (
    "NOT EXISTS (SELECT 1 FROM store_mailboxes s WHERE s.server = p.server"
    " AND s.mailbox = p.mailbox AND s.in_transit = 1)"
)


def status(conn: Conn, server: str, queue: str) -> QueueStatus:
    row = conn.execute(
        "SELECT status FROM queue_state WHERE server=? AND queue=?", (server, queue)
    ).fetchone()
    return QueueStatus.READY if row is None else QueueStatus(row[0])


def set_status(
    conn: Conn,
    server: str,
    queue: str,
    new: QueueStatus,
    *,
    next_retry: float | None = None,
    last_error: str | None = None,
) -> None:
    """Move a queue to ``new``; ``stores.machine.InvalidTransition`` when it may not."""
    current = status(conn, server, queue)
    if current == new and new != QueueStatus.RETRY:
        return
    QUEUES.move(identity(server, queue), current, new)
    conn.execute(
        "INSERT INTO queue_state(server, queue, status, next_retry, last_error) VALUES (?,?,?,?,?)"
        " ON CONFLICT(server, queue) DO UPDATE SET status=excluded.status,"
        " next_retry=excluded.next_retry, last_error=excluded.last_error",
        (server, queue, new.value, next_retry, last_error),
    )


class State(NamedTuple):
    """A queue's row in ``queue_state``."""

    server: str
    queue: QueueId
    status: QueueStatus
    next_retry: float | None
    last_error: str | None


def states(conn: Conn) -> dict[tuple[str, str], State]:
    """Every queue that has a state, by (server, queue id)."""
    return {
        (r["server"], r["queue"]): State(r["server"], QueueId(r["queue"]),
                                         QueueStatus(r["status"]), r["next_retry"],
                                         r["last_error"])
        for r in conn.execute("SELECT * FROM queue_state")
    }


def exists(conn: Conn, server: str, queue: str) -> bool:
    """Whether ``queue`` on ``server`` holds mail or has a state."""
    return conn.execute(
        "SELECT 1 FROM pairs WHERE server=? AND queue=? UNION SELECT 1 FROM queue_state"
        " WHERE server=? AND queue=? LIMIT 1", (server, queue, server, queue),
    ).fetchone() is not None


def waits_for_transit(conn: Conn, server: str, queue: str) -> bool:
    """Whether a pair in ``queue`` on ``server`` waits for a mailbox that is in transit
    there (what "the mailbox is in transit" says of it)."""
    return conn.execute(
        f"SELECT 1 FROM pairs p WHERE p.server = ? AND p.queue = ? AND NOT ({NOT_IN_TRANSIT})"
        " LIMIT 1", (server, queue),
    ).fetchone() is not None


def outbound_disabled(conn: Conn, server: str) -> bool:
    row = conn.execute("SELECT 1 FROM outbound_disabled WHERE server=?", (server,)).fetchone()
    return row is not None


def outbound_disabled_servers(conn: Conn) -> set[str]:
    return {r[0] for r in conn.execute("SELECT server FROM outbound_disabled")}


def set_outbound(conn: Conn, server: str, enabled: bool, now: float) -> None:
    if enabled:
        conn.execute("DELETE FROM outbound_disabled WHERE server=?", (server,))
    else:
        conn.execute("INSERT OR IGNORE INTO outbound_disabled(server, since) VALUES (?,?)",
                     (server, now))


def queue_keys(conn: Conn, servers: Iterable[str]) -> list[tuple[str, QueueId]]:
    """Every non-empty queue ``(server, queue id)`` of ``servers``, in order. It seeks the
    queue index from one queue id to the next, so a queue of 500,000 costs one step."""
    keys = []
    for server in servers:
        queue = ""
        while (row := conn.execute(
            "SELECT queue FROM pairs WHERE server = ? AND queue IS NOT NULL AND queue > ?"
            " ORDER BY queue LIMIT 1", (server, queue),
        ).fetchone()) is not None:
            queue = row[0]
            keys.append((server, QueueId(queue)))
    return keys


def due_queues(conn: Conn, servers: Iterable[str], now: float,
               wanted: Callable[[str], bool], *, sendable: bool = False
               ) -> list[tuple[str, QueueId]]:
    """The non-empty queues of ``servers`` that ``wanted`` picks and that hold an unfrozen
    pair (``sendable``: also not held by "Disable Outbound Mail") whose attempt has fallen
    due by ``now``: one index seek per queue, however deep it is."""
    condition = SENDABLE if sendable else UNFROZEN
    return [
        (server, queue) for server, queue in queue_keys(conn, servers)
        if wanted(queue) and conn.execute(
            "SELECT 1 FROM pairs p WHERE p.server = ? AND p.queue = ? AND p.next_attempt <= ?"
            f" AND {condition} LIMIT 1", (server, queue, now),
        ).fetchone() is not None
    ]


def next_attempt_after(conn: Conn, server: str, queue: str, after: float) -> float | None:
    """The first attempt after ``after`` of an unfrozen pair of the queue: one seek."""
    row = conn.execute(
        "SELECT next_attempt FROM pairs WHERE server = ? AND queue = ? AND next_attempt > ?"
        " AND frozen = 0 ORDER BY next_attempt LIMIT 1", (server, queue, after),
    ).fetchone()
    return None if row is None else float(row[0])


class Stats(NamedTuple):
    depth: int
    oldest_at: float
    next_attempt: float | None  # the earliest of the pairs not frozen
    last_error: str | None  # of the pair due last


def stats(conn: Conn, server: str, queue: str) -> Stats:
    """What the listing shows of one non-empty queue. Only the count walks the queue's
    index range; the rest are seeks to one end of an index."""
    key = (server, queue)
    # Apart, because MIN next to COUNT would be computed row by row instead of by a seek.
    (depth,) = conn.execute(
        "SELECT COUNT(*) FROM pairs WHERE server = ? AND queue = ?", key
    ).fetchone()
    (oldest_at,) = conn.execute(
        "SELECT MIN(queued_at) FROM pairs WHERE server = ? AND queue = ?", key
    ).fetchone()
    # pairs_by_queue in next_attempt order: it stops at the first pair not frozen.
    due = conn.execute(
        "SELECT next_attempt FROM pairs WHERE server = ? AND queue = ? AND frozen = 0"
        " AND next_attempt IS NOT NULL ORDER BY next_attempt LIMIT 1", key
    ).fetchone()
    # The error of the pair due last, else of any: in two seeks, as the databases sort NULL
    # apart (SQLite first, PostgreSQL last).
    last = conn.execute(
        "SELECT last_error FROM pairs WHERE server = ? AND queue = ?"
        " AND next_attempt IS NOT NULL ORDER BY next_attempt DESC LIMIT 1", key
    ).fetchone() or conn.execute(
        "SELECT last_error FROM pairs WHERE server = ? AND queue = ? LIMIT 1", key
    ).fetchone()
    last_error = last[0]
    return Stats(depth, oldest_at, None if due is None else due[0], last_error)


def retry_info(conn: Conn, server: str, queue: str) -> tuple[int, float | None]:
    """(most attempts of a pair, first refusal of any pair) in one queue, for Get-Queue's
    RetryCount and retry times (``routing.hub_views``)."""
    row = conn.execute("SELECT MAX(attempts), MIN(first_refused_at) FROM pairs"
                       " WHERE server = ? AND queue = ?", (server, queue)).fetchone()
    return int(row[0] or 0), None if row[1] is None else float(row[1])
