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

from collections.abc import Callable

from stores import messages, pairs, releases
from stores.backend import Tx
from stores.errors import MapiError
from stores.messages import Pair, PairState
from stores.queue_ids import DEFERRED

QUEUE = DEFERRED
# How the error text of a refusal of ecMailboxInTransit ends (``routing.queues`` reads it).
IN_TRANSIT_ERROR = "the mailbox is in transit"


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
        last_error=f"{error.describe()}: {IN_TRANSIT_ERROR}",
        # Every refusal is a delivery attempt: the first makes attempts 1, as the trace says.
        count_attempt=True,
    )
    if pair.first_refused_at is None:
        pairs.set_first_refused(tx, pair, tx.now)
    tx.trace(pair.message, pair.rcpt, server, "deferred",
             f"queue {QUEUE}, attempt {pair.attempts}, next retry in {interval / 60:g} min")
    if not retried:
        tx.note("deferred", server=server, queue=QUEUE)


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
    releases.start(tx, mailbox, queue)
    handle(releases.next_page(tx, mailbox, queue, RELEASE_PAGE))


def release_due(tx: Tx, queue: str, handle: PageHandler) -> int:
    """The next page of every release from ``queue`` still going on; returns the pairs."""
    released = 0
    for mailbox in releases.going(tx, queue):
        page = releases.next_page(tx, mailbox, queue, RELEASE_PAGE)
        handle(page)
        released += len(page)
    return released
