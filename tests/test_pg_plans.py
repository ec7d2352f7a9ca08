"""Every hot query has an index on PostgreSQL too: the scheduler's, the transport's and the
Queue Viewer's reads, as the query modules spell them, planned by a real PostgreSQL with
sequential scans priced out. A plan that still reads a whole table of mail has no index
to serve it (a few rows would never show it: PostgreSQL scans small tables anyway)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from stores import links, listing, pairs, pgdialect, queue_state
from stores import moves as stored_moves
from stores.pg import PgConn, migrate

# The tables that grow with the mail and the moves; small ones (meta, queues) may be scanned.
BIG = ("pairs", "messages", "moves", "mailbox_items", "trace")
SERVERS = ["EX2003-A", "EX2003-B"]


class Explaining:
    """A store connection that has PostgreSQL plan each statement before running it."""

    def __init__(self, conn: PgConn) -> None:
        self.conn = conn
        self.plans: list[tuple[str, str]] = []

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        plan = self.conn.raw.execute("EXPLAIN " + pgdialect.statement(sql), parameters)
        self.plans.append((sql, "\n".join(str(row[0]) for row in plan)))
        return self.conn.execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> Any:
        return self.conn.executemany(sql, parameters)


@pytest.fixture(scope="module")
def explaining(postgres: Any) -> Iterator[Explaining]:
    conn = PgConn(postgres.new_database())
    migrate(conn)
    conn.raw.execute("SET enable_seqscan = off")
    yield Explaining(conn)
    conn.close()


READS: list[tuple[str, Callable[[Any], object]]] = [
    ("links.due", lambda c: list(links.due(c, "EX2003-A", "smtp:EX2003-B", 1e9, 100))),
    ("pairs.due", lambda c: pairs.due(c, SERVERS, "deferred", 1e9)),
    ("pairs.due_by_id", lambda c: pairs.due_by_id(c, "EX2003-A", "mta:EX55-LON", 1e9)),
    ("pairs.waiting", lambda c: pairs.waiting(c, SERVERS, "unreachable")),
    ("pairs.hop_token", lambda c: pairs.hop_token(c, "m", "EX2003-A", "smtp:EX2003-B")),
    ("queue_state.queue_keys", lambda c: queue_state.queue_keys(c, SERVERS)),
    ("queue_state.due_queues", lambda c: queue_state.due_queues(c, SERVERS, 1e9,
                                                                lambda q: True)),
    ("queue_state.next_attempt_after",
     lambda c: queue_state.next_attempt_after(c, "EX2003-A", "deferred", 0.0)),
    ("listing.queue_messages", lambda c: listing.queue_messages(c, "EX2003-A", "deferred",
                                                                50, 100)),
    ("moves.next_due", lambda c: stored_moves.next_due(c, 0.0)),
    ("moves.at_steps", lambda c: stored_moves.at_steps(c, ["wizard2003"], ["Held"])),
    ("moves.count_in_batch", lambda c: stored_moves.count_in_batch(c, "b1", ["Held"])),
]


@pytest.mark.parametrize(("name", "read"), READS, ids=[name for name, _ in READS])
def test_the_hot_reads_seek_an_index(explaining: Explaining, name: str,
                                     read: Callable[[Any], object]) -> None:
    explaining.plans.clear()
    read(explaining)
    assert explaining.plans, f"{name} ran no SQL"
    for sql, plan in explaining.plans:
        scanned = [table for table in BIG if f"Seq Scan on {table}" in plan]
        assert not scanned, f"{name}: {sql}\n{plan}"
