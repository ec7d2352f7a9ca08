"""Exchange 2003 "Messages queued for deferred delivery".

In: pairs the store driver refused with ecMailboxInTransit.
Out: the same pairs, parked in queue ``deferred`` of the delivering server
and handed back to the categorizer either when their retry falls due (about
every 30 simulated minutes, KB 838644) or at once when the mailbox's
PR_IN_TRANSIT flag is cleared (``held_for``). A frozen message, or any message
of a frozen queue, is handed back to nobody until it is thawed.
"""

from __future__ import annotations

import sqlite3

from routing import queues
from stores import messages
from stores.db import Tx
from stores.errors import MapiError
from stores.messages import Pair, PairState

QUEUE = "deferred"


def next_retry(refused_at: float, interval: float) -> float:
    """When a refused pair is tried again: a fixed interval after each refusal."""
    return refused_at + interval


def defer(tx: Tx, pair: Pair, server: str, interval: float, error: MapiError) -> None:
    retried = pair.state == PairState.DEFERRED
    messages.place_queued(
        tx,
        pair,
        server,
        QUEUE,
        next_attempt=next_retry(tx.now, interval),
        last_error=f"{error.describe()}: the mailbox is in transit",
        count_attempt=retried,
    )
    if pair.first_refused_at is None:
        pair.first_refused_at = tx.now
        tx.conn.execute("UPDATE pairs SET first_refused_at=? WHERE id=?", (tx.now, pair.id))
    tx.trace(pair.message, pair.rcpt, server, "deferred",
             f"queue {QUEUE}, attempt {pair.attempts + 1}, next retry in {interval / 60:g} min")
    if not retried:
        tx.note("deferred", server=server, queue=QUEUE)


def due(conn: sqlite3.Connection, now: float) -> list[Pair]:
    return messages.load(
        conn,
        f"p.queue = ? AND {queues.UNFROZEN} AND p.next_attempt <= ? ORDER BY p.next_attempt",
        (QUEUE, now),
    )


def held_for(conn: sqlite3.Connection, mailbox: str) -> list[Pair]:
    """Every unfrozen pair deferred for ``mailbox``, on any server."""
    return messages.load(
        conn, f"p.mailbox = ? AND p.queue = ? AND {queues.UNFROZEN} ORDER BY p.id",
        (mailbox, QUEUE),
    )
