"""Local delivery: a pair whose home is on the server it is at, handed to the store driver.

In: a pair, its server and the PR_IN_TRANSIT flag of its mailbox there (from the
categorizer). Out: the pair DELIVERED into an Inbox item; or, refused with
ecMailboxInTransit (event 9660), parked: in queue ``deferred`` on 2003, in the
mailbox delivery queue ``mapi:<DATABASE>`` on 2007/2010 (``routing.deferred``),
in the store's InTransitFolder (queue ``holding``) on 5.5/2000; or, refused
otherwise, the refusal's text, for the categorizer to send the pair to
``unreachable``.
"""

from __future__ import annotations

from routing import deferred
from stores import databases, messages, pairs
from stores.backend import Tx
from stores.driver import Delivery, put_item, verdict
from stores.errors import MapiError
from stores.mailbox import INBOX
from stores.messages import Pair, PairState
from stores.queue_ids import HOLDING
from stores.topology import Scenario, Server

# LastError of mail for a dismounted DAG database (the exception name is unconfirmed).
MDB_OFFLINE_ERROR = ("432 4.2.0 STOREDRV.Deliver.Exception:StorageTransientException."
                     "MapiExceptionMdbOffline: the mailbox database is dismounted")


def deliver(tx: Tx, scenario: Scenario, pair: Pair, at: Server,
            in_transit: bool | None) -> str | None:
    """Deliver or park ``pair``; the error text when the store refused it for good."""
    if scenario.databases and in_transit is not None and databases.dismounted_at(tx, at.name):
        # Issue 19: the DAG database is dismounted: the mail waits in its delivery queue
        # (Retry). DAG members are 2010 servers, so the MAPI error only stands in: the
        # queue's LastError is the store driver's text.
        deferred.defer(tx, pair, at, scenario.defaults, MapiError.ecServerPaused,
                       last_error=MDB_OFFLINE_ERROR)
        return None
    result = verdict(pair, in_transit)
    if result is Delivery.DELIVERED:
        messages.place_final(tx, pair, PairState.DELIVERED)
        put_item(tx, at.name, pair, tx.now)
        tx.trace(pair.message, pair.rcpt, at.name, "delivered",
                 f"mailbox {pair.mailbox}, folder {INBOX}")
        tx.note("delivered", server=at.name)
        tx.note("delivery_latency", tx.now - pair.accepted_at, server=at.name)
        if pair.first_refused_at is not None:
            tx.note("deferral", tx.now - pair.first_refused_at, server=at.name)
        return None
    assert result.error is not None
    tx.note("store_failure", server=at.name, error=result.error.name)
    tx.trace(pair.message, pair.rcpt, at.name, "refused", result.error.describe())
    if result is not Delivery.IN_TRANSIT:
        return result.error.describe()
    tx.event(
        "MSExchangeIS", 9660, "Error", at.name,
        f"User {pair.mailbox} failed to log on because their mailbox is in the process"
        " of being moved.", category="General",
    )
    if at.version.legacy_mta:
        _hold(tx, pair, at, result.error)
    else:
        deferred.defer(tx, pair, at, scenario.defaults, result.error)
    return None


def _hold(tx: Tx, pair: Pair, at: Server, error: MapiError) -> None:
    """5.5/2000: the store writes the mail into the mailbox's InTransitFolder (Q277911)."""
    messages.place_queued(tx, pair, at.name, HOLDING, last_error=f"{error.describe()}: held in"
                          " the InTransitFolder until the move ends")
    pairs.set_first_refused(tx, pair, tx.now)
    tx.trace(pair.message, pair.rcpt, at.name, "held", "InTransitFolder (queue holding)")
    tx.note("deferred", server=at.name, queue=HOLDING)
