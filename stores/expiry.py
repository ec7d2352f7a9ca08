"""The pairs delay notifications and expiry look at, found along the arrival indexes.

In: a server, bounds on arrival time (from ``routing.dsn``, which knows each
version's delays) and X.400 priorities. Out: ``Candidate`` records of the
unfrozen pairs old enough for a delay notice not yet sent or for expiry, the
first arrival past a bound (for the scheduler's next due time), and the mark
that a pair's delay notice was sent. Only the queues the SMTP service (2007+:
transport) reports delay and expiry for are looked at: not the InTransitFolder
(``holding``, a store folder) and not the MTA's queues (``mta:*``, whose message
timeouts ``routing.mta`` applies).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from stores.backend import Conn
from stores.queue_ids import HOLDING, MTA_PREFIX
from stores.queue_state import UNFROZEN

_CANDIDATE = (
    "SELECT p.id, p.message, p.rcpt, p.server, p.queue, p.last_error, p.delay_notified_at,"
    " p.accepted_at, m.priority, m.mail_from, m.dsn_of FROM pairs p"
    f" JOIN messages m ON m.id = p.message WHERE p.server = ? AND p.queue IS NOT NULL"
    f" AND {UNFROZEN} AND p.queue != '{HOLDING}' AND p.queue NOT LIKE '{MTA_PREFIX}%'"
)
# Each condition keeps SQLite on one index of the pairs of one server by arrival
# (``pairs_awaiting_delay`` or ``pairs_by_arrival``), so only pairs old enough are read.
_AWAITING_DELAY = " AND p.delay_notified_at IS NULL AND p.accepted_at"
_ANY = " AND p.accepted_at"
# X.400 priorities as conditions on the message (anything else counts as normal).
_PRIORITIES = {
    "urgent": "m.priority = 'urgent'",
    "non-urgent": "m.priority = 'non-urgent'",
    "normal": "m.priority NOT IN ('urgent', 'non-urgent')",
}
PRIORITIES = tuple(_PRIORITIES)


class Candidate(NamedTuple):
    id: int
    message: str
    rcpt: str
    server: str
    queue: str
    last_error: str | None
    delay_notified_at: float | None
    accepted_at: float
    priority: str
    mail_from: str
    dsn_of: str | None


class Bounds(NamedTuple):
    """Of one server: pairs that arrived by ``delay`` are due a delay notice (None: that
    server sends none), pairs that arrived by ``expiry`` may have expired."""

    server: str
    delay: float | None
    expiry: float


def old_enough(conn: Conn, bounds: Sequence[Bounds]) -> list[Candidate]:
    """The candidate pairs old enough, on their server, for a delay notice not yet sent or
    for expiry; in pair order."""
    rows: dict[int, Candidate] = {}
    for server, delay, expiry in bounds:
        if delay is not None:
            for row in conn.execute(f"{_CANDIDATE}{_AWAITING_DELAY} <= ?", (server, delay)):
                rows[row["id"]] = Candidate(*row)
        for row in conn.execute(f"{_CANDIDATE}{_ANY} <= ?", (server, expiry)):
            rows[row["id"]] = Candidate(*row)
    return [rows[key] for key in sorted(rows)]


def _first(conn: Conn, condition: str, args: tuple[object, ...]) -> float | None:
    row = conn.execute(f"{_CANDIDATE}{condition} ORDER BY p.accepted_at LIMIT 1",
                       args).fetchone()
    return None if row is None else float(row["accepted_at"])


def first_awaiting_delay(conn: Conn, server: str, after: float) -> float | None:
    """The first arrival after ``after`` of a pair with a sender still owed a delay notice."""
    return _first(conn, f"{_AWAITING_DELAY} > ? AND m.mail_from != ''", (server, after))


def first_arrival(conn: Conn, server: str, after: float, priority: str | None = None
                  ) -> float | None:
    """The first arrival after ``after`` of a candidate (of ``priority``, when given)."""
    condition = "1=1" if priority is None else _PRIORITIES[priority]
    return _first(conn, f"{_ANY} > ? AND {condition}", (server, after))


def mark_delay_notified(conn: Conn, ids: Sequence[int], now: float) -> None:
    conn.executemany("UPDATE pairs SET delay_notified_at=? WHERE id=?",
                     [(now, pair_id) for pair_id in ids])
