"""Queues as Exchange Queue Viewer shows them: the standard queues and the listing.

In: a read handle and the scenario. Out: the queues every server shows even when
empty (``standard_queues``) and the rows of ``mailflow queues`` /
``GET /api/v1/queues`` (``list_queues``), computed from the pairs at each request
(index seeks and one count per non-empty queue, ``stores.queue_state``) so they
never drift. The queue state machine, the outbound switch and the seeks are in
``stores.queue_state``; ids and display names in ``stores.queue_ids``.
"""

from __future__ import annotations

from typing import Any

from routing import hub_views
from routing.deferred import IN_TRANSIT_ERROR, parking_queue
from stores import queue_ids, queue_state
from stores.backend import Read
from stores.queue_ids import DEFERRED, HOLDING, LOCAL, UNREACHABLE, QueueId, display_name, identity
from stores.queue_state import QueueStatus
from stores.topology import Scenario, Server

__all__ = ["QueueStatus", "connection_queue", "display_name", "identity", "list_queues",
           "shown_status", "standard_queues"]

# The listing's order of the fixed queues of a server; the others follow by id.
_ORDER = {q: i for i, q in enumerate((LOCAL, DEFERRED, HOLDING, UNREACHABLE))}


def standard_queues(server: Server) -> tuple[QueueId, ...]:
    """Queues every server of this version always shows, even when empty."""
    if server.version.legacy_mta:
        # 5.5/2000 park in-transit mail in the store's InTransitFolder, not an SMTP queue.
        return (LOCAL, HOLDING, UNREACHABLE)
    # 2003: "Messages queued for deferred delivery"; 2007/2010: the delivery queue.
    return (LOCAL, parking_queue(server), UNREACHABLE)


def connection_queue(queue: str) -> bool:
    """A queue that drains over a connection: a link (``smtp:*``), the smarthost, an MTA
    queue (``mta:*``, ``mta:x400:*``)."""
    return queue_ids.is_outbound(queue) or queue_ids.is_mta(queue)


def shown_status(server: str, queue: str, stat: queue_state.Stats | None,
                 state: queue_state.State | None, now: float, *, outbound_off: bool,
                 in_transit: bool) -> tuple[QueueStatus, float | None, str | None]:
    """(status, next retry, last error) Queue Viewer shows for a queue of ``server``: from
    its state row, what the listing read of its pairs (``stat``, None when empty), whether "Disable
    Outbound Mail" holds it and whether a pair in it waits for a mailbox in transit.

    - Retry with nothing left in it is Ready: expiry or a move emptied it.
    - ``deferred`` (and a 2007/2010 delivery queue ``mapi:*``) is Retry while an unfrozen
      message waits for the store's next retry (KB 838644); holding only frozen messages
      it is Ready, and once no mailbox of its messages is in transit, "the mailbox is in
      transit" is no longer its error (other errors, such as a stopped MTA's, stay).
    - A connection queue (link, smarthost, MTA) in Ready holding an unfrozen message that
      is due is Active: the lab opens the connection as soon as mail is due, so due mail
      in a Ready queue is mail being relayed (Queue Viewer's Active while it drains).
    """
    count = stat.depth if stat else 0
    current = state.status if state else QueueStatus.READY
    next_retry = state.next_retry if state else None
    last_error = (state.last_error if state else None) or (stat.last_error if stat else None)
    due = stat.next_attempt if stat else None
    held = outbound_off and queue_ids.is_outbound(queue)
    if current == QueueStatus.RETRY and not count:
        current, next_retry = QueueStatus.READY, None
    if queue_ids.is_parking(queue) and count:
        if current == QueueStatus.READY and due is not None:
            current, next_retry = QueueStatus.RETRY, due
        if not in_transit and last_error and last_error.endswith(IN_TRANSIT_ERROR):
            last_error = None
    elif (current == QueueStatus.READY and count and connection_queue(queue) and not held
          and due is not None and due <= now):
        current = QueueStatus.ACTIVE
    if held:
        last_error, next_retry = f"Outbound mail is disabled on {server}", None
    return current, next_retry, last_error


def list_queues(db: Read, scenario: Scenario, now: float) -> list[dict[str, Any]]:
    """The rows of ``mailflow queues``: the standard queues of every server, and every queue
    that holds mail or has a state, with the status ``shown_status`` decides. A queue's last
    error is its state's (a link's last failure) or else the last error of the pair due
    last, which is the most recent failure in the queue: a failure sets its pair's next
    attempt furthest out. That is one seek, where the highest error text of all pairs
    would read every row."""
    stats: dict[tuple[str, str], queue_state.Stats] = {
        key: queue_state.stats(db, *key)
        for key in queue_state.queue_keys(db, (s.name for s in scenario.servers))
    }
    states = queue_state.states(db)
    no_outbound = queue_state.outbound_disabled_servers(db)
    keys: set[tuple[str, str]] = {(s.name, q) for s in scenario.servers for q in standard_queues(s)}
    keys |= set(stats) | set(states)
    rows = []
    for server, queue in sorted(keys, key=lambda k: (k[0], _ORDER.get(QueueId(k[1]), len(_ORDER)),
                                                     k[1])):
        stat = stats.get((server, queue))
        current, next_retry, last_error = shown_status(
            server, queue, stat, states.get((server, queue)), now,
            outbound_off=server in no_outbound, in_transit=queue_ids.is_parking(queue)
            and stat is not None
            and queue_state.waits_for_transit(db, server, queue))
        rows.append(
            {
                "server": server,
                "queue": queue,
                "identity": identity(server, queue),
                "display_name": display_name(queue),
                "message_count": stat.depth if stat else 0,
                "status": current.value,
                "next_retry_time": next_retry,
                "last_error": last_error,
                "oldest_message_age_seconds": max(0.0, now - stat.oldest_at) if stat else 0.0,
            }
        )
    return [_hub_row(db, scenario, row, keys) for row in rows]


def _hub_row(db: Read, scenario: Scenario, row: dict[str, Any],
             keys: set[tuple[str, str]]) -> dict[str, Any]:
    """A queue of a 2007/2010 server as Get-Queue shows it; other servers' rows as they are."""
    if not scenario.server(row["server"]).version.hub_transport:
        return row
    order = hub_views.numbered([q for s, q in keys if s == row["server"]])
    attempts, first = (queue_state.retry_info(db, row["server"], row["queue"])
                       if row["message_count"] and queue_ids.is_parking(row["queue"])
                       else (0, None))
    return hub_views.get_queue(row, scenario, order, attempts, first)
