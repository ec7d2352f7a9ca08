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

from stores import queue_ids, queue_state
from stores.backend import Read
from stores.queue_ids import DEFERRED, HOLDING, LOCAL, UNREACHABLE, QueueId, display_name, identity
from stores.queue_state import QueueStatus
from stores.topology import Scenario, Server

__all__ = ["QueueStatus", "display_name", "identity", "list_queues", "standard_queues"]

# The listing's order of the fixed queues of a server; the others follow by id.
_ORDER = {q: i for i, q in enumerate((LOCAL, DEFERRED, HOLDING, UNREACHABLE))}


def standard_queues(server: Server) -> tuple[QueueId, ...]:
    """Queues every server of this version always shows, even when empty."""
    if server.version.legacy_mta:
        # 5.5/2000 park in-transit mail in the store's InTransitFolder, not an SMTP queue.
        return (LOCAL, HOLDING, UNREACHABLE)
    return (LOCAL, DEFERRED, UNREACHABLE)


def list_queues(db: Read, scenario: Scenario, now: float) -> list[dict[str, Any]]:
    """The rows of ``mailflow queues``: the standard queues of every server, and every queue
    that holds mail or has a state. A queue's last error is its state's (a link's last
    failure) or else the last error of the pair due last, which is the most recent failure
    in the queue: a failure sets its pair's next attempt furthest out. That is one seek,
    where the highest error text of all pairs would read every row."""
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
        state = states.get((server, queue))
        count = stat.depth if stat else 0
        current = state.status if state else QueueStatus.READY
        next_retry = state.next_retry if state else None
        if current == QueueStatus.RETRY and not count:
            # Emptied by expiry or a move: nothing waits for that retry any more.
            current, next_retry = QueueStatus.READY, None
        if current == QueueStatus.READY and queue == DEFERRED and count:
            # Deferred delivery waits for its next retry of the store (KB 838644).
            current, next_retry = QueueStatus.RETRY, stat.next_attempt if stat else None
        last_error = (state.last_error if state else None) or (stat.last_error if stat else None)
        if server in no_outbound and queue_ids.is_outbound(queue):
            last_error, next_retry = f"Outbound mail is disabled on {server}", None
        rows.append(
            {
                "server": server,
                "queue": queue,
                "identity": identity(server, queue),
                "display_name": display_name(queue),
                "message_count": count,
                "status": current.value,
                "next_retry_time": next_retry,
                "last_error": last_error,
                "oldest_message_age_seconds": max(0.0, now - stat.oldest_at) if stat else 0.0,
            }
        )
    return rows
