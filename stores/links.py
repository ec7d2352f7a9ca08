"""Link queues in the store: the batches the SMTP transport sends, and a link's retry.

In: a link queue (``smtp:<SERVER>`` or ``smarthost``) of a server, a time and
a batch size. Out: the link's due, sendable pairs with their envelopes
(``due``, one read along ``pairs_by_queue``), the raw bytes of their messages
(``raws``), and a failed link's pairs postponed to its retry (``postpone``,
``hold``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from stores.backend import Conn
from stores.queue_state import SENDABLE
from stores.sql import marks

# (pair id, message, rcpt, hop token, mail_from, message size): rows as they come, with no
# record built per row, for a batch holds thousands.
LinkPair = tuple[int, str, str, str | None, str, int]


def due(conn: Conn, server: str, queue: str, now: float, limit: int) -> Iterator[LinkPair]:
    """Up to ``limit`` due pairs of the link, not frozen nor held by "Disable Outbound
    Mail", by due time; the caller may stop reading early."""
    return iter(conn.execute(
        "SELECT p.id, p.message, p.rcpt, p.hop_token, m.mail_from, m.size FROM pairs p"
        " JOIN messages m ON m.id = p.message WHERE p.server = ? AND p.queue = ?"
        f" AND {SENDABLE} AND p.next_attempt <= ? ORDER BY p.next_attempt, p.id LIMIT ?",
        (server, queue, now, limit),
    ))


def raws(conn: Conn, messages: Sequence[str]) -> dict[str, bytes]:
    """The raw bytes of ``messages``, by message id."""
    return dict(conn.execute(f"SELECT id, raw FROM messages WHERE id IN ({marks(messages)})",
                             messages))


def postpone(conn: Conn, server: str, queue: str, ids: Sequence[int], retry_at: float,
             error: str) -> None:
    """Count a failed attempt for those of pairs ``ids`` still waiting in the link."""
    conn.execute(
        "UPDATE pairs SET attempts = attempts + 1, next_attempt = ?, last_error = ?"
        f" WHERE server = ? AND queue = ? AND id IN ({marks(ids)})",
        (retry_at, error, server, queue, *ids),
    )


def hold(conn: Conn, server: str, queue: str, retry_at: float) -> None:
    """The whole link waits for its retry, as an Exchange link queue in Retry does."""
    conn.execute(
        "UPDATE pairs SET next_attempt = CASE WHEN next_attempt > ? THEN next_attempt ELSE ? END"
        " WHERE server = ? AND queue = ?",
        (retry_at, retry_at, server, queue),
    )
