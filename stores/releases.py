"""Releases of parked mail, paged: the store keeps where each release has got to.

In: a mailbox whose PR_IN_TRANSIT was cleared and the queue its mail waits in
(``deferred``, or ``holding`` on 5.5/2000). Out: pages of its unfrozen parked
pairs in pair order, ``start`` first and then one page per write from
``next_page``; the ``releases`` row moves past each page whatever becomes of
its pairs and goes when a page comes back short, so a release of 500,000 never
sits in memory or in one transaction, and goes on after a restart.
"""

from __future__ import annotations

from stores.backend import Conn, Tx
from stores.messages import Pair, PairState, load
from stores.queue_state import UNFROZEN


def start(conn: Conn, mailbox: str, queue: str) -> None:
    """Begin (or begin again) the release of ``mailbox``'s mail parked in ``queue``."""
    conn.execute(
        "INSERT INTO releases(mailbox, queue, after_id) VALUES (?, ?, 0)"
        " ON CONFLICT(mailbox, queue) DO UPDATE SET after_id = 0", (mailbox, queue),
    )


def going(conn: Conn, queue: str) -> list[str]:
    """The mailboxes whose release from ``queue`` is still going on."""
    return [r[0] for r in conn.execute("SELECT mailbox FROM releases WHERE queue = ?",
                                       (queue,)).fetchall()]


def next_page(tx: Tx, mailbox: str, queue: str, size: int) -> list[Pair]:
    """The next ``size`` unfrozen pairs of a release, in pair order; a full page notes
    ``releasing``, which wakes the scheduler for the next one."""
    row = tx.execute("SELECT after_id FROM releases WHERE mailbox = ? AND queue = ?",
                     (mailbox, queue)).fetchone()
    if row is None:
        return []
    page = load(
        tx, f"p.mailbox = ? AND p.state = ? AND p.queue = ? AND p.id > ? AND"
        f" {UNFROZEN} ORDER BY p.id LIMIT ?",
        (mailbox, PairState.DEFERRED.value, queue, row[0], size),
    )
    if len(page) < size:
        tx.execute("DELETE FROM releases WHERE mailbox = ? AND queue = ?", (mailbox, queue))
    else:
        tx.execute("UPDATE releases SET after_id = ? WHERE mailbox = ? AND queue = ?",
                   (page[-1].id, mailbox, queue))
        tx.note("releasing")
    return page
