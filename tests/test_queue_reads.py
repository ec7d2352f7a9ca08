"""The per-queue reads behind /metrics and the queue listing, against a brute-force count of
the same pairs: ages on and next to every bucket bound, in the future and far past, frozen
pairs, pairs without a next attempt, and other queues and servers next to the one read; on both
backends."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from stores import queue_state as queues
from stores.snapshot import AGE_BUCKETS
from stores.snapshot import snapshot as _snapshot

SERVERS = ("EX2003-A", "EX55-LON")
QUEUE_IDS = ("deferred", "holding", "smtp:EX2003-B")
ERRORS = (None, "451 4.4.0 try later", "0x50C ecMailboxInTransit")


@dataclass(frozen=True)
class Row:
    server: str
    queue: str | None
    age: float  # now - queued_at, before the nudge
    nudge: int  # queued_at moved to the next float down (-1) or up (1)
    next_in: float | None  # next_attempt - now
    frozen: bool
    error: str | None


# Ages on a bucket bound (nudged: a hair either side of it), just queued, not yet queued (a
# clock set back), and anything from the future to well past the last bucket.
AGES = st.one_of(st.sampled_from([0.0, -1.0, *AGE_BUCKETS]),
                 st.floats(-600, 2 * AGE_BUCKETS[-1], allow_nan=False))
ROWS = st.lists(st.builds(
    Row,
    server=st.sampled_from(SERVERS),
    queue=st.one_of(st.none(), st.sampled_from(QUEUE_IDS)),
    age=AGES,
    nudge=st.sampled_from([-1, 0, 1]),
    next_in=st.one_of(st.none(), st.sampled_from([-60.0, 0.0, 1800.0]),
                      st.floats(-3600, 3600, allow_nan=False)),
    frozen=st.booleans(),
    error=st.sampled_from(ERRORS),
), max_size=60)
NOWS = st.floats(1e6, 2e9, allow_nan=False)


def _queued_at(row: Row, now: float) -> float:
    return math.nextafter(now - row.age, row.nudge * math.inf) if row.nudge else now - row.age


def _next_attempt(row: Row, now: float) -> float | None:
    return None if row.next_in is None else now + row.next_in


def _store(conn: Any, rows: list[Row], now: float) -> Any:
    conn.execute("INSERT INTO messages(id, message_id, mail_from, subject, size, raw,"
                 " accepted_server, accepted_at, accepted_real) VALUES"
                 " ('m', '<m@x>', '', '', 0, ?, 'EX2003-A', 0, 0)", (b"",))
    conn.executemany(
        "INSERT INTO pairs(message, rcpt, state, server, queue, queued_at, next_attempt,"
        " last_error, frozen) VALUES ('m', ?, 'deferred', ?, ?, ?, ?, ?, ?)",
        [(f"r{i}@contoso.test", r.server, r.queue, _queued_at(r, now), _next_attempt(r, now),
          r.error, int(r.frozen))
         for i, r in enumerate(rows)],
    )
    return conn


@settings(deadline=None)
@given(rows=ROWS, now=NOWS)
def test_queue_ages_equal_a_count_of_every_pair(blank_store: Callable[[], Any], rows: list[Row],
                                                now: float) -> None:
    conn = _store(blank_store(), rows, now)
    snapshot = _snapshot(conn, now, SERVERS)
    expected_keys = {(r.server, r.queue) for r in rows if r.queue is not None}
    assert set(snapshot.queues) == expected_keys
    for (server, queue), got in snapshot.queues.items():
        queued_at = [_queued_at(r, now) for r in rows if (r.server, r.queue) == (server, queue)]
        assert got.depth == len(queued_at)
        assert got.oldest_at == min(queued_at)
        assert got.within == tuple(sum(q >= now - le for q in queued_at) for le in AGE_BUCKETS)
        assert math.isclose(got.age_sum, math.fsum(max(0.0, now - q) for q in queued_at),
                            rel_tol=1e-12, abs_tol=1e-6)


@settings(deadline=None)
@given(rows=ROWS, now=NOWS)
def test_queue_stats_equal_a_count_of_every_pair(blank_store: Callable[[], Any], rows: list[Row],
                                                 now: float) -> None:
    conn = _store(blank_store(), rows, now)
    for server, queue in queues.queue_keys(conn, SERVERS):
        mine = [r for r in rows if (r.server, r.queue) == (server, queue)]
        stats = queues.stats(conn, server, queue)
        assert stats.depth == len(mine)
        assert stats.oldest_at == min(_queued_at(r, now) for r in mine)
        scheduled = [(r, at) for r in mine if (at := _next_attempt(r, now)) is not None]
        due = [at for r, at in scheduled if not r.frozen]
        assert stats.next_attempt == (min(due) if due else None)
        # The error of the pair due last (any of them on a tie); without a next attempt
        # anywhere, of any pair.
        last = max((at for _, at in scheduled), default=None)
        candidates = [r for r, at in scheduled if at == last] if scheduled else mine
        assert stats.last_error in {r.error for r in candidates}
