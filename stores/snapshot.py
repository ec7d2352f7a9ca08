"""What the metrics scrape reads of the store: queue depths and ages, transit flags, moves.

In: a read handle, the lab clock's now and the servers. Out: a ``Snapshot``: per
non-empty queue its depth, oldest arrival, age sum and cumulative counts per
qshape age bucket (``AGE_MINUTES``, the one declaration of those buckets), the
mailboxes in transit per store, and the moves per status.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import accumulate, pairwise

from stores.backend import Read
from stores.queue_ids import QueueId
from stores.queue_state import queue_keys
from stores.readmodels import move_counts

# Postfix qshape's age buckets: upper bounds in minutes (``mailflow qshape`` and the
# ``mailflow_queue_message_age_seconds`` histogram).
AGE_MINUTES = (5, 10, 20, 40, 80, 160, 320, 640, 1280)
AGE_BUCKETS = tuple(m * 60.0 for m in AGE_MINUTES)


@dataclass(frozen=True)
class Queued:
    """What one queue holds: recipients, the oldest queued_at, and their ages."""

    depth: int
    oldest_at: float | None
    age_sum: float
    # Recipients at most AGE_BUCKETS[i] old, cumulative like Prometheus buckets.
    within: tuple[int, ...]


EMPTY = Queued(0, None, 0.0, (0,) * len(AGE_BUCKETS))


@dataclass(frozen=True)
class Snapshot:
    queues: dict[tuple[str, QueueId], Queued]
    in_transit: dict[str, int]
    moves: dict[str, int]


# The recipients of one queue queued in [lo, hi), and the sum of their ages: a range of
# pairs_by_age, read from the index alone.
_SEGMENT = (
    "SELECT COUNT(*), COALESCE(SUM(? - queued_at), 0.0) FROM pairs"
    " WHERE server = ? AND queue = ? AND queued_at >= ? AND queued_at < ?"
)


def queue_ages(conn: Read, server: str, queue: str, now: float) -> Queued:
    """Depth, oldest queued_at, age sum and cumulative AGE_BUCKETS counts of one queue.

    The bucket bounds cut the queue's queued_at range into disjoint segments; one range
    query counts and sums each, so the queue's index range is walked once, and the oldest
    is a seek. One GROUP BY with a CASE per bucket on every row took 4 times the CPU at
    500,000 queued. Every queued pair has a queued_at (the categorizer and
    ``place_queued`` set it), so the segments hold the whole queue.
    """
    # Youngest first: queued now or later (a clock set back), age 0 as MAX(0, now -
    # queued_at) has it, and in every bucket; then each bucket's own ages; then older.
    edges = [math.inf, now, *(now - le for le in AGE_BUCKETS), -math.inf]
    segments = [conn.execute(_SEGMENT, (now, server, queue, lo, hi)).fetchone()
                for hi, lo in pairwise(edges)]
    cumulative = list(accumulate(n for n, _ in segments))
    (oldest_at,) = conn.execute(
        "SELECT MIN(queued_at) FROM pairs WHERE server = ? AND queue = ?", (server, queue)
    ).fetchone()
    return Queued(
        depth=cumulative[-1],
        oldest_at=oldest_at,
        age_sum=math.fsum(total for _, total in segments[1:]),
        within=tuple(cumulative[1:len(AGE_BUCKETS) + 1]),
    )


def snapshot(conn: Read, now: float, servers: Iterable[str]) -> Snapshot:
    return Snapshot(
        queues={key: queue_ages(conn, *key, now) for key in queue_keys(conn, servers)},
        in_transit=dict(conn.execute(
            "SELECT server, COUNT(*) FROM store_mailboxes WHERE in_transit=1 GROUP BY server"
        ).fetchall()),
        moves=move_counts(conn),
    )
