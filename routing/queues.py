"""Queues as Exchange Queue Viewer shows them: ids, display names, status and the listing.

In: queue ids (``local``, ``deferred``, ``smtp:EX2003-B`` ...) and status changes.
Out: the queue state machine (Ready, Active, Retry, Frozen) kept in
``queue_state``, the SQL condition every drain uses to skip frozen mail
(``UNFROZEN``), the per-server "Disable Outbound Mail" switch, and the rows of
``mailflow queues`` / ``GET /api/v1/queues``, computed from the pairs at each
request (index seeks and one count per non-empty queue) so they never drift.
"""

from __future__ import annotations

import enum
import sqlite3
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from stores.messages import SMARTHOST
from stores.topology import Scenario, Server


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


class InvalidQueueTransition(RuntimeError):
    def __init__(self, server: str, queue: str, current: QueueStatus, new: QueueStatus) -> None:
        super().__init__(
            f"queue {identity(server, queue)}: invalid transition {current.name} -> {new.name}"
        )


# Display names of Exchange 2003 Queue Viewer (exchange-facts.md, "SMTP queues").
DISPLAY_NAMES = {
    "local": "Local delivery",
    "deferred": "Messages queued for deferred delivery",
    "unreachable": "Messages with an unreachable destination",
    "holding": "InTransitFolder",
    SMARTHOST: "Outbound smarthost",
}

# What every drain adds to its query of pairs ``p``: a frozen message, or any message of a
# frozen queue, stays where it is until it is thawed.
UNFROZEN = (
    "p.frozen = 0 AND NOT EXISTS (SELECT 1 FROM queue_state fq WHERE fq.server = p.server"
    " AND fq.queue = p.queue AND fq.status = 'Frozen')"
)
# Link queues that "Disable Outbound Mail" holds: SMTP to other servers and the smarthost.
OUTBOUND = f"(p.queue LIKE 'smtp:%' OR p.queue = '{SMARTHOST}')"
OUTBOUND_ENABLED = (
    f"NOT ({OUTBOUND} AND EXISTS (SELECT 1 FROM outbound_disabled od"
    " WHERE od.server = p.server))"
)


def is_outbound(queue: str) -> bool:
    return queue.startswith("smtp:") or queue == SMARTHOST


def outbound_disabled(conn: sqlite3.Connection, server: str) -> bool:
    row = conn.execute("SELECT 1 FROM outbound_disabled WHERE server=?", (server,)).fetchone()
    return row is not None


def set_outbound(conn: sqlite3.Connection, server: str, enabled: bool, now: float) -> None:
    if enabled:
        conn.execute("DELETE FROM outbound_disabled WHERE server=?", (server,))
    else:
        conn.execute("INSERT OR IGNORE INTO outbound_disabled(server, since) VALUES (?,?)",
                     (server, now))


def display_name(queue: str) -> str:
    if queue in DISPLAY_NAMES:
        return DISPLAY_NAMES[queue]
    # Link and MTA queues are named after their destination.
    return queue.rsplit(":", 1)[-1]


def identity(server: str, queue: str) -> str:
    return f"{server}\\{display_name(queue)}"


def standard_queues(server: Server) -> tuple[str, ...]:
    """Queues every server of this version always shows, even when empty."""
    if server.legacy:
        # 5.5/2000 park in-transit mail in the store's InTransitFolder, not an SMTP queue.
        return ("local", "holding", "unreachable")
    return ("local", "deferred", "unreachable")


def queue_keys(conn: sqlite3.Connection, servers: Iterable[str]) -> list[tuple[str, str]]:
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
            keys.append((server, queue))
    return keys


def due_queues(conn: sqlite3.Connection, servers: Iterable[str], now: float,
               wanted: Callable[[str], bool], condition: str = UNFROZEN) -> list[tuple[str, str]]:
    """The non-empty queues of ``servers`` that ``wanted`` picks and that hold a pair,
    meeting ``condition`` (on pairs ``p``), whose attempt has fallen due by ``now``: one
    index seek per queue, however deep it is."""
    return [
        (server, queue) for server, queue in queue_keys(conn, servers)
        if wanted(queue) and conn.execute(
            "SELECT 1 FROM pairs p WHERE p.server = ? AND p.queue = ? AND p.next_attempt <= ?"
            f" AND {condition} LIMIT 1", (server, queue, now),
        ).fetchone() is not None
    ]


def status(conn: sqlite3.Connection, server: str, queue: str) -> QueueStatus:
    row = conn.execute(
        "SELECT status FROM queue_state WHERE server=? AND queue=?", (server, queue)
    ).fetchone()
    return QueueStatus.READY if row is None else QueueStatus(row[0])


def set_status(
    conn: sqlite3.Connection,
    server: str,
    queue: str,
    new: QueueStatus,
    *,
    next_retry: float | None = None,
    last_error: str | None = None,
) -> None:
    current = status(conn, server, queue)
    if current == new and new != QueueStatus.RETRY:
        return
    if new not in TRANSITIONS[current]:
        raise InvalidQueueTransition(server, queue, current, new)
    conn.execute(
        "INSERT INTO queue_state(server, queue, status, next_retry, last_error) VALUES (?,?,?,?,?)"
        " ON CONFLICT(server, queue) DO UPDATE SET status=excluded.status,"
        " next_retry=excluded.next_retry, last_error=excluded.last_error",
        (server, queue, new.value, next_retry, last_error),
    )


class _QueueStats(NamedTuple):
    depth: int
    oldest_at: float
    next_attempt: float | None  # the earliest of the pairs not frozen
    last_error: str | None  # of the pair due last


def _queue_stats(conn: sqlite3.Connection, server: str, queue: str) -> _QueueStats:
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
    (last_error,) = conn.execute(
        "SELECT last_error FROM pairs WHERE server = ? AND queue = ?"
        " ORDER BY next_attempt DESC LIMIT 1", key
    ).fetchone()
    return _QueueStats(depth, oldest_at, None if due is None else due[0], last_error)


def list_queues(conn: sqlite3.Connection, scenario: Scenario, now: float) -> list[dict[str, Any]]:
    """The rows of ``mailflow queues``: the standard queues of every server, and every queue
    that holds mail or has a state. A queue's last error is its state's (a link's last
    failure) or else the last error of the pair due last, which is the most recent failure
    in the queue: a failure sets its pair's next attempt furthest out. That is one seek,
    where the highest error text of all pairs would read every row."""
    stats = {
        key: _queue_stats(conn, *key)
        for key in queue_keys(conn, (s.name for s in scenario.servers))
    }
    states = {(r[0], r[1]): r for r in conn.execute("SELECT * FROM queue_state")}
    no_outbound = {r[0] for r in conn.execute("SELECT server FROM outbound_disabled")}
    keys = {(s.name, q) for s in scenario.servers for q in standard_queues(s)}
    keys |= set(stats) | set(states)
    rows = []
    order = {q: i for i, q in enumerate(("local", "deferred", "holding", "unreachable"))}
    for server, queue in sorted(keys, key=lambda k: (k[0], order.get(k[1], len(order)), k[1])):
        stat = stats.get((server, queue))
        state = states.get((server, queue))
        count = stat.depth if stat else 0
        current = QueueStatus(state["status"]) if state else QueueStatus.READY
        next_retry = state["next_retry"] if state else None
        if current == QueueStatus.RETRY and not count:
            # Emptied by expiry or a move: nothing waits for that retry any more.
            current, next_retry = QueueStatus.READY, None
        if current == QueueStatus.READY and queue == "deferred" and count:
            # Deferred delivery waits for its next retry of the store (KB 838644).
            current, next_retry = QueueStatus.RETRY, stat.next_attempt if stat else None
        last_error = (state["last_error"] if state else None) or (stat.last_error if stat else None)
        if server in no_outbound and is_outbound(queue):
            last_error, next_retry = f"Outbound mail is disabled on {server}", None
        rows.append(
            {
                "server": server,
                "queue": queue,
                "identity": identity(server, queue),
                "display_name": display_name(queue),
                "message_count": count,
                "status": current.value,
                "next_retry_time": next_retry,
                "last_error": last_error,
                "oldest_message_age_seconds": max(0.0, now - stat.oldest_at) if stat else 0.0,
            }
        )
    return rows
