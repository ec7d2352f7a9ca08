"""The Exchange 5.5/2000 MTA: its RPC and X.400 queues, transfers, retries and events.

In: pairs the categorizer queued for the MTA (``mta:<SERVER>`` for RPC,
``mta:x400:<CONNECTOR>`` for an X.400 connector), and the mail of an
InTransitFolder (queue ``holding``) when its mailbox's move ends.
Out: pairs transferred to the next server and routed there, or left in their
queue in Retry after a failed open (events 9318 and 9322), or NDR'd (4.4.7,
``routing.dsn``) when the open retries or the message timeout run out. Frozen
messages and frozen queues are skipped.

Released InTransitFolder mail of a 5.5 store is the MTA's blind spot (seed 003):
it assumes the new home is in its own site and queues the mail for RPC to
that server, which never drains when the sites share no RPC path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from routing import categorizer, connectors, deferred, dsn, resolve
from stores import connectors as stored_connectors
from stores import directory, messages, pairs, queue_ids, queue_state, services
from stores.backend import Tx
from stores.messages import Pair
from stores.queue_ids import HOLDING, LOCAL, QueueId
from stores.queue_state import QueueStatus
from stores.topology import Defaults, Scenario, Server

RPC_SERVER_UNAVAILABLE = 1722  # NT error: "The RPC server is unavailable"


def next_open(now: float, failed: list[Pair], defaults: Defaults) -> float:
    """When the MTA opens the queue again after the open of ``failed`` failed at ``now``:
    an interval after the open was due, not after the tick that ran it (which comes late
    by up to a tick, and would drift at a fast clock); an interval after ``now`` on the
    first failure. Opens missed while the lab was stopped are skipped, keeping the step."""
    interval = defaults.mta_open_interval_seconds
    retried = [p.next_attempt for p in failed if p.attempts and p.next_attempt is not None]
    if not retried or interval <= 0:
        return now + interval
    due = min(retried)
    missed = max(0, math.floor((now - due) / interval))
    return due + (missed + 1) * interval


def release_holding(tx: Tx, scenario: Scenario, mailbox: str) -> None:
    """Flush the InTransitFolders of ``mailbox`` into their store's MTA: the first page
    now, the rest from ``release_due``; a stopped MTA leaves its pairs where they are."""
    deferred.release(tx, mailbox, HOLDING, lambda page: _release(tx, scenario, page))


def release_due(tx: Tx, scenario: Scenario) -> int:
    """The next page of every InTransitFolder release still going on."""
    return deferred.release_due(tx, HOLDING,
                                lambda page: _release(tx, scenario, page))


def flush_holding(tx: Tx, scenario: Scenario, server: str) -> int:
    """Flush the InTransitFolders on ``server`` of every mailbox no longer in transit there
    (its MTA started, or an operator retried the queue)."""
    return _release(tx, scenario, pairs.releasable(tx, server, HOLDING))


def _release(tx: Tx, scenario: Scenario, held: list[Pair]) -> int:
    released = 0
    for pair in held:
        if not services.running(tx, pair.server, "mta"):
            continue
        tx.trace(pair.message, pair.rcpt, pair.server, "released", "InTransitFolder to the MTA")
        tx.note("released", server=pair.server, queue=HOLDING)
        _reroute(tx, scenario, pair, scenario.server(pair.server))
        released += 1
    return released


def _reroute(tx: Tx, scenario: Scenario, pair: Pair, at: Server) -> None:
    home = directory.lookup(tx, pair.rcpt)
    target = None if home is None else scenario.server(home.server)
    if target is None or target.name == at.name:
        categorizer.route(tx, scenario, pair, at)
    elif not at.version.smtp_transport:  # 5.5
        categorizer.to_mta(tx, pair, at, queue_ids.mta(target.name))
    else:
        hop = connectors.next_hop(tx, at, target, mta=True)
        if hop.queue is None:
            categorizer.route(tx, scenario, pair, at)
        else:
            categorizer.to_mta(tx, pair, at, hop.queue)


def run_due(tx: Tx, scenario: Scenario, servers: Sequence[str] | None = None) -> int:
    """Open every MTA queue with mail due, on ``servers`` (default: all) whose MTA runs;
    returns pairs handled."""
    names = servers if servers is not None else [s.name for s in scenario.servers]
    return sum(
        _open(tx, scenario, scenario.server(server), queue)
        for server, queue in queue_state.due_queues(tx, names, tx.now, queue_ids.is_mta)
        if services.running(tx, server, "mta")
    )


def _open(tx: Tx, scenario: Scenario, at: Server, queue: QueueId) -> int:
    due = [p for p in pairs.due_by_id(tx, at.name, queue, tx.now)
           if not _expired(tx, scenario, p, at)]
    if not due:
        return 1
    kind, target_name = queue_ids.parse(queue)
    if kind is queue_ids.Kind.X400:
        _over_x400(tx, scenario, at, target_name, due)
        return len(due)
    target = scenario.server(target_name)
    if connectors.rpc_possible(tx, at, target) and services.running(tx, target.name, "mta"):
        for pair in due:
            _arrive(tx, scenario, pair, at, target, "rpc")
        if queue_state.status(tx, at.name, queue) == QueueStatus.RETRY:
            queue_state.set_status(tx, at.name, queue, QueueStatus.READY)
    else:
        _open_failed(tx, scenario, at, target, queue, due)
    return len(due)


def _over_x400(tx: Tx, scenario: Scenario, at: Server, name: str, due: list[Pair]) -> None:
    connector = stored_connectors.by_name(tx, name)
    far_site = None if connector is None else connector.far_site(at.site)
    for pair in due:
        # Resolved again as the categorizer did, through this server's replica.
        home = resolve.lookup(tx, scenario, pair.rcpt, at)
        target = scenario.server(home.server) if isinstance(home, directory.Home) else None
        if target is not None and target.site == far_site:
            _arrive(tx, scenario, pair, at, target, "x400")
        else:
            # The connector is gone or the mailbox moved: route the pair again from here.
            categorizer.route(tx, scenario, pair, at)


def _arrive(tx: Tx, scenario: Scenario, pair: Pair, at: Server, target: Server,
            transport: str) -> None:
    if messages.arrivals(tx, pair.message, pair.rcpt, target.name) >= resolve.LOOP_LIMIT:
        # Directories that disagree (a 5.5 replica behind AD) can send mail in circles.
        categorizer.fail(tx, scenario, [pair], at, resolve.loop_detected())
        return
    messages.place_queued(tx, pair, target.name, LOCAL)
    tx.trace(pair.message, pair.rcpt, at.name, "relayed", f"to {target.name} over {transport}")
    tx.trace(pair.message, pair.rcpt, target.name, "received", f"from {at.name} MTA")
    tx.note("rerouted", server=at.name, transport=transport)
    categorizer.route(tx, scenario, pair, target)


def _open_failed(tx: Tx, scenario: Scenario, at: Server, target: Server, queue: QueueId,
                 failed: list[Pair]) -> None:
    """An RPC bind that cannot succeed: events 9318 and 9322, then Retry (exchange-facts.md)."""
    code = RPC_SERVER_UNAVAILABLE
    tx.event("MSExchangeMTA", 9318, "Warning", at.name,
             "An RPC communications error occurred. Unable to bind over RPC. Locality Table"
             f" (LTAB) index: 0, NT/MTA error code: {code}. Comms error {code}, Bind error"
             f" {code}, Remote Server Name {target.name} [MTA {at.name}]", category="Interface")
    tx.event("MSExchangeMTA", 9322, "Warning", at.name,
             f"An MtaBindBack over RPC has failed. Remote Server Name {target.name}."
             f" NT/MTA error code: {code}.", category="Interface")
    for event_id in ("9318", "9322"):
        tx.note("mta_failure", server=at.name, target=target.name, event_id=event_id)
    retry_at = next_open(tx.now, failed, scenario.defaults)
    error = f"Unable to bind over RPC to {target.name} (NT/MTA error code {code})"
    for pair in failed:
        messages.place_queued(tx, pair, at.name, queue, next_attempt=retry_at, last_error=error,
                              count_attempt=True)
    if queue_state.status(tx, at.name, queue) != QueueStatus.FROZEN:
        queue_state.set_status(tx, at.name, queue, QueueStatus.RETRY,
                               next_retry=retry_at, last_error=error)


def _expired(tx: Tx, scenario: Scenario, pair: Pair, at: Server) -> bool:
    """Past its open retries or its message timeout, the MTA gives the pair up."""
    defaults = scenario.defaults
    assert pair.queued_at is not None
    if tx.now - pair.queued_at >= dsn.message_timeout(defaults, pair.priority):
        why = f"MTA message timeout ({pair.priority}) expired"
    elif pair.attempts >= defaults.mta_max_open_retries:
        why = f"MTA gave up after {pair.attempts} open retries"
    else:
        return False
    categorizer.fail(tx, scenario, [pair], at, dsn.mta_gave_up(why))
    return True
