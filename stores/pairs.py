"""Named queries of queued pairs: which pairs routing takes next, and small changes to them.

In: a connection (``Tx`` or ``Read``), servers, queue ids and times. Out:
``Pair`` records (due retries, waiting mail, InTransitFolder mail to flush, the
pairs of a hop token or of a message in a queue), and the few column updates
that are not a move between places (``stores.messages.place_*`` does those):
retry now, freeze, first refusal, the flush wait. Every query names its
servers and queue, so SQLite stays on the queue index (``pairs_by_queue``).
"""

from __future__ import annotations

from collections.abc import Sequence

from stores.backend import Conn
from stores.messages import Pair, load, message_id_forms
from stores.queue_ids import DEFERRED
from stores.queue_state import NOT_IN_TRANSIT, UNFROZEN
from stores.sql import marks


def due(conn: Conn, servers: Sequence[str], queue: str, now: float) -> list[Pair]:
    """The unfrozen pairs of ``queue`` on ``servers`` whose retry has fallen due, by due time."""
    return load(
        conn,
        f"p.server IN ({marks(servers)}) AND p.queue = ? AND p.next_attempt <= ? AND {UNFROZEN}"
        " ORDER BY p.next_attempt",
        (*servers, queue, now),
    )


def due_by_id(conn: Conn, server: str, queue: str, now: float) -> list[Pair]:
    """The unfrozen pairs of one queue whose attempt has fallen due, in pair order."""
    return load(
        conn, f"p.server = ? AND p.queue = ? AND {UNFROZEN} AND p.next_attempt <= ?"
        " ORDER BY p.id", (server, queue, now),
    )


def waiting(conn: Conn, servers: Sequence[str], queue: str) -> list[Pair]:
    """The pairs not frozen (whatever their queue's state) in ``queue`` on ``servers``."""
    return load(conn, f"p.server IN ({marks(servers)}) AND p.queue = ? AND p.frozen = 0",
                (*servers, queue))


def releasable(conn: Conn, server: str, queue: str) -> list[Pair]:
    """The unfrozen pairs of ``queue`` on ``server`` whose mailbox is not in transit there."""
    return load(conn, f"p.server = ? AND p.queue = ? AND {NOT_IN_TRANSIT} AND {UNFROZEN}"
                " ORDER BY p.id", (server, queue))


def by_hop_token(conn: Conn, token: str, queue: str) -> list[Pair]:
    return load(conn, "p.hop_token = ? AND p.queue = ?", (token, queue))


def hop_token(conn: Conn, message: str, server: str, queue: str) -> str | None:
    """The hop token a pair of ``message`` already waiting in the link queue carries."""
    # The unary + keeps SQLite on the (message, rcpt) index: planned on the queue index,
    # a release of N pairs into one link queue scanned that queue N times.
    row = conn.execute(
        "SELECT hop_token FROM pairs WHERE message=? AND +server=? AND +queue=?"
        " AND hop_token IS NOT NULL LIMIT 1",
        (message, server, queue),
    ).fetchone()
    return None if row is None else str(row[0])


def by_id(conn: Conn, pair_id: int) -> Pair:
    return load(conn, "p.id = ?", (pair_id,))[0]


def in_queue(conn: Conn, server: str, queue: str, ids: Sequence[int]) -> list[Pair]:
    """Those of pairs ``ids`` that still wait in ``queue`` on ``server``."""
    return load(conn, f"p.server = ? AND p.queue = ? AND p.id IN ({marks(ids)})",
                (server, queue, *ids))


def of_message(conn: Conn, server: str, queue: str, message: str) -> list[Pair]:
    """The pairs of one message (queue id, or Message-ID header with or without <>) that
    wait in ``queue`` on ``server``."""
    return load(
        conn, "p.server = ? AND p.queue = ? AND (p.message = ? OR p.message IN"
        " (SELECT id FROM messages WHERE message_id IN (?, ?))) ORDER BY p.id",
        (server, queue, message, *message_id_forms(message)),
    )


def set_first_refused(conn: Conn, pair: Pair, at: float) -> None:
    pair.first_refused_at = at
    conn.execute("UPDATE pairs SET first_refused_at=? WHERE id=?", (at, pair.id))


def wait_until(conn: Conn, pair_id: int, at: float, why: str) -> None:
    """Leave a pair where it is until ``at``, saying why."""
    conn.execute("UPDATE pairs SET next_attempt=?, last_error=? WHERE id=?", (at, why, pair_id))


def retry_now(conn: Conn, server: str, queue: str, now: float) -> int:
    """Every unfrozen pair of the queue is due now; returns how many."""
    return conn.execute(
        "UPDATE pairs SET next_attempt=? WHERE server=? AND queue=? AND frozen=0",
        (now, server, queue),
    ).rowcount


def retry_deferred(conn: Conn, server: str, now: float, *, ids: Sequence[int] | None = None,
                   skip_frozen: bool = False, queue: str = DEFERRED) -> None:
    """Deferred mail (in ``queue``: ``deferred``, or a 2007/2010 mailbox delivery queue) on
    ``server`` of mailboxes no longer in transit is due now (only pairs ``ids``, when given;
    ``skip_frozen``: not the frozen ones)."""
    frozen = " AND frozen=0" if skip_frozen else ""
    only = "" if ids is None else f" AND id IN ({marks(ids)})"
    conn.execute(
        f"UPDATE pairs AS p SET next_attempt=? WHERE server=? AND queue=?{frozen}"
        f" AND {NOT_IN_TRANSIT}{only}",
        (now, server, queue, *(ids or [])),
    )


def set_frozen(conn: Conn, ids: Sequence[int], frozen: bool) -> None:
    conn.execute(f"UPDATE pairs SET frozen=? WHERE id IN ({marks(ids)})", (int(frozen), *ids))


def all_in_queue(conn: Conn, server: str, queue: str) -> list[Pair]:
    """Every pair waiting in ``queue`` on ``server``, frozen or not (Delete all messages)."""
    return load(conn, "p.server = ? AND p.queue = ? ORDER BY p.id", (server, queue))
