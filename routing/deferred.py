"""Exchange 2003 "Messages queued for deferred delivery", and 2007/2010 mailbox delivery queues.

In: pairs the store driver refused with ecMailboxInTransit.
Out: the same pairs, parked in queue ``deferred`` of a 2003 server (retried about
every 30 simulated minutes, KB 838644) or in the mailbox delivery queue
``mapi:<DATABASE>`` of a 2007/2010 server (Status Retry; retried
TransientFailureRetryCount times every TransientFailureRetryInterval, then every
MessageRetryInterval: ``hub_retry_interval``), and handed back to the
categorizer either when their retry falls due or at once when the mailbox's
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
from stores.queue_ids import DEFERRED, QueueId, mapi_delivery
from stores.topology import Defaults, Scenario, Server, mailbox_database

QUEUE = DEFERRED
# How the error text of a refusal of ecMailboxInTransit ends (``routing.queues`` reads it).
IN_TRANSIT_ERROR = "the mailbox is in transit"
# LastError of a 2007/2010 delivery queue: the store driver's transient error (the form of
# exchange-facts.md, Transport: "432 4.2.0 STOREDRV.Deliver.Exception:..."; the exception
# name for a mailbox in transit is unconfirmed, a default of the lab).
HUB_IN_TRANSIT_ERROR = ("432 4.2.0 STOREDRV.Deliver.Exception:StorageTransientException."
                        "MapiExceptionMailboxInTransit")
# DeferReason of mail the store driver hands back to the categorizer (fact sheet, 2007+).
REROUTED = "Rerouted By Store Driver"


def next_retry(refused_at: float, interval: float) -> float:
    """When a refused pair is tried again: a fixed interval after each refusal."""
    return refused_at + interval


def hub_retry_interval(defaults: Defaults, attempts: int) -> float:
    """2007/2010: after the ``attempts``-th refusal (1 for the first delivery), the wait
    before the next try: TransientFailureRetryInterval for the first
    TransientFailureRetryCount retries, then MessageRetryInterval."""
    if attempts <= defaults.transient_failure_retry_count:
        return defaults.transient_failure_retry_interval_seconds
    return defaults.message_retry_interval_seconds


def parking_queue(server: Server) -> QueueId:
    """Where ``server`` parks mail its store refused as in transit (2003 and later)."""
    if server.version.hub_transport:
        return mapi_delivery(mailbox_database(server.name))
    return DEFERRED


def parking_queues(scenario: Scenario) -> list[QueueId]:
    """Every parking queue of the organization: ``deferred`` and each delivery queue."""
    hubs = {parking_queue(s) for s in scenario.servers if s.version.hub_transport}
    return [DEFERRED, *sorted(hubs)]


def defer(tx: Tx, pair: Pair, server: Server, defaults: Defaults, error: MapiError,
          last_error: str | None = None) -> None:
    """Park ``pair``; ``last_error`` replaces the in-transit text (a dismounted database)."""
    retried = pair.state == PairState.DEFERRED
    queue, hub = parking_queue(server), server.version.hub_transport
    attempts = pair.attempts + 1 if retried and pair.queue == queue else 1
    interval = (hub_retry_interval(defaults, attempts) if hub
                else defaults.deferred_retry_seconds)
    messages.place_queued(
        tx,
        pair,
        server.name,
        queue,
        next_attempt=next_retry(tx.now, interval),
        last_error=last_error or (f"{HUB_IN_TRANSIT_ERROR}: {IN_TRANSIT_ERROR}" if hub
                                  else f"{error.describe()}: {IN_TRANSIT_ERROR}"),
        # Every refusal is a delivery attempt: the first makes attempts 1, as the trace says.
        count_attempt=True,
    )
    if pair.first_refused_at is None:
        pairs.set_first_refused(tx, pair, tx.now)
    tx.trace(pair.message, pair.rcpt, server.name, "deferred",
             f"queue {queue}, attempt {pair.attempts}, next retry in {interval / 60:g} min")
    if not retried:
        tx.note("deferred", server=server.name, queue=queue)


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
