"""A page of a queue's messages read from the queue's age index (the Queue Viewer's path,
issue 21) is the same page as the whole queue listed by the filtered query: same messages,
same order, same recipients, for every page size and with ``queued_by``; on both backends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from stores import listing

SERVER, QUEUE = "EX2003-A", "deferred"
# Per message: when each of its pairs arrived, and whether it is in the queue read.
MESSAGES = st.lists(st.lists(st.tuples(st.integers(0, 50), st.booleans()), min_size=1,
                             max_size=3), max_size=25)


def _store(conn: Any, messages: list[list[tuple[int, bool]]]) -> Any:
    for n, pairs in enumerate(messages):
        conn.execute("INSERT INTO messages(id, message_id, mail_from, subject, size, raw,"
                     " accepted_server, accepted_at, accepted_real) VALUES"
                     " (?, '', 's@x.test', '', 0, ?, ?, 0, 0)", (f"m{n:03d}", b"", SERVER))
        # Arrival times differ between messages (n / 100), not within one: a tie between
        # two messages' first arrivals is ordered by pair id in both reads only when the
        # first pair is also the lowest id, which the index cannot see.
        conn.executemany(
            "INSERT INTO pairs(message, rcpt, state, server, queue, queued_at) VALUES"
            " (?, ?, 'deferred', ?, ?, ?)",
            [(f"m{n:03d}", f"r{i}@contoso.test", SERVER, QUEUE if here else "local",
              at + n / 100) for i, (at, here) in enumerate(pairs)])
    return conn


@settings(deadline=None)
@given(messages=MESSAGES, size=st.integers(1, 7), queued_by=st.sampled_from([None, 25.0]))
def test_pages_equal_the_whole_listing(blank_store: Callable[[], Any],
                                       messages: list[list[tuple[int, bool]]], size: int,
                                       queued_by: float | None) -> None:
    conn = _store(blank_store(), messages)
    whole = listing.queue_messages(conn, SERVER, QUEUE, 10_000, 0, sender="",
                                   queued_by=queued_by)  # the filtered query
    paged: list[listing.QueueMessage] = []
    while page := listing.queue_messages(conn, SERVER, QUEUE, size, len(paged),
                                         queued_by=queued_by):
        assert len(page) <= size
        paged.extend(page)
    assert paged == whole
