"""Exchange 2003 "Messages queued for deferred delivery".

In: pairs the store driver refused with ecMailboxInTransit.
Out: the same pairs, parked in queue ``deferred`` of the delivering server
and handed back to the categorizer either when their retry falls due (about
every 30 simulated minutes, KB 838644) or at once when the mailbox's
PR_IN_TRANSIT flag is cleared: in pages of pairs, the first in the transaction
that clears the flag and the rest in the scheduler's next writes, so a release
of 500,000 never sits in memory or in one transaction (``release``,
``release_due``). A frozen message, or any message of a frozen queue, is
handed back to nobody until it is thawed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

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


def due(conn: sqlite3.Connection, servers: Sequence[str], now: float) -> list[Pair]:
    """The pairs of ``servers`` whose retry has fallen due; naming the servers keeps SQLite
    on the queue index, so only due pairs are read."""
    marks = ",".join("?" * len(servers))
    return messages.load(
        conn,
        f"p.server IN ({marks}) AND p.queue = ? AND p.next_attempt <= ? AND {queues.UNFROZEN}"
        " ORDER BY p.next_attempt",
        (*servers, QUEUE, now),
    )


# Pairs released per transaction: big enough to drain fast, small enough that the SMTP
# accepts waiting for the writer meanwhile wait only a moment.
RELEASE_PAGE = 1000
# What a release does with each page of pairs it hands back.
PageHandler = Callable[[list[Pair]], object]


def release(tx: Tx, mailbox: str, queue: str, handle: PageHandler) -> None:
    """PR_IN_TRANSIT of ``mailbox`` was cleared: release its mail parked in ``queue``
    (``deferred``, or ``holding`` on 5.5/2000), the first page to ``handle`` now and the
    rest from ``release_due``. The release is kept in the store, so it goes on after a
    restart."""
    tx.conn.execute(
        "INSERT INTO releases(mailbox, queue, after_id) VALUES (?, ?, 0)"
        " ON CONFLICT(mailbox, queue) DO UPDATE SET after_id = 0", (mailbox, queue),
    )
    handle(_page(tx, mailbox, queue))


def release_due(tx: Tx, queue: str, handle: PageHandler) -> int:
    """The next page of every release from ``queue`` still going on; returns the pairs."""
    released = 0
    for (mailbox,) in tx.conn.execute("SELECT mailbox FROM releases WHERE queue = ?",
                                      (queue,)).fetchall():
        page = _page(tx, mailbox, queue)
        handle(page)
        released += len(page)
    return released


def _page(tx: Tx, mailbox: str, queue: str) -> list[Pair]:
    """The next ``RELEASE_PAGE`` unfrozen pairs of a release, in pair order. The release
    moves past them whatever becomes of them, so a pair that stays parked (its MTA is
    stopped) is not taken again; it ends when a page comes back short."""
    row = tx.conn.execute("SELECT after_id FROM releases WHERE mailbox = ? AND queue = ?",
                          (mailbox, queue)).fetchone()
    if row is None:
        return []
    page = messages.load(
        tx.conn, f"p.mailbox = ? AND p.state = ? AND p.queue = ? AND p.id > ? AND"
        f" {queues.UNFROZEN} ORDER BY p.id LIMIT ?",
        (mailbox, PairState.DEFERRED.value, queue, row[0], RELEASE_PAGE),
    )
    if len(page) < RELEASE_PAGE:
        tx.conn.execute("DELETE FROM releases WHERE mailbox = ? AND queue = ?", (mailbox, queue))
    else:
        tx.conn.execute("UPDATE releases SET after_id = ? WHERE mailbox = ? AND queue = ?",
                        (page[-1].id, mailbox, queue))
        tx.note("releasing")  # wakes the scheduler for the next page
    return page
