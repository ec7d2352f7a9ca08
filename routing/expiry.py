"""Delay notifications and expiry on the lab clock.

In: the lab's scenario and its clock's time, in a write (``run_due``) or a read
(``next_due``). Out: a delay notification (one per message and server) for each
pair late enough on its server, sent through the categorizer's intake like new
mail, and every pair too old NDR'd (4.4.7, ``categorizer.fail``); or the next
time either falls due, for ``Lab.advance``. Frozen mail waits: its time is
looked at again when it is thawed. The pairs come from ``stores.expiry``; the
times and the words from ``routing.dsn``.
"""

from __future__ import annotations

from routing import categorizer, dsn
from stores import expiry, pairs, queue_ids
from stores.backend import Read, Tx
from stores.expiry import PRIORITIES, Bounds, Candidate
from stores.messages import Pair
from stores.topology import Defaults, Scenario, Server


def _delay_status(queue: str) -> str:
    """RFC 3463 status of a delay: the store refused (4.2.0, as 2007's store driver says),
    a remote host does not answer (4.4.1), or no route yet (4.4.0)."""
    if queue_ids.is_parking(queue):
        return "4.2.0"
    if queue_ids.is_outbound(queue):
        return "4.4.1"
    return "4.4.0"


def _expiry_offset(server: Server, defaults: Defaults) -> float:
    """The shortest time after arrival at which mail on ``server`` can expire."""
    return min(dsn.expiry_due(0.0, server, priority, defaults) for priority in PRIORITIES)


def _bounds(scenario: Scenario, now: float) -> list[Bounds]:
    """Per server, the latest arrivals old enough for a delay notice and for expiry."""
    bounds = []
    for server in scenario.servers:
        delay = dsn.delay_due(0.0, server, scenario.defaults)
        bounds.append(Bounds(server.name, None if delay is None else now - delay,
                             now - _expiry_offset(server, scenario.defaults)))
    return bounds


def run_due(tx: Tx, scenario: Scenario) -> int:
    """Send every delay notification and expire every pair whose time has come; returns how
    many pairs were handled."""
    defaults = scenario.defaults
    expiring: dict[str, list[Pair]] = {}
    delayed: dict[tuple[str, str], list[Candidate]] = {}
    for row in expiry.old_enough(tx, _bounds(scenario, tx.now)):
        server = scenario.server(row.server)
        if tx.now >= dsn.expiry_due(row.accepted_at, server, row.priority, defaults):
            expiring.setdefault(server.name, []).append(pairs.by_id(tx, row.id))
            continue
        due = dsn.delay_due(row.accepted_at, server, defaults)
        if (due is not None and tx.now >= due and row.delay_notified_at is None
                and row.mail_from and row.dsn_of is None):
            delayed.setdefault((server.name, row.message), []).append(row)
    for name, expired in expiring.items():
        at = scenario.server(name)
        categorizer.fail(tx, scenario, expired, at, dsn.expired(at))
    for (name, message), rows in delayed.items():
        _notify_delay(tx, scenario, scenario.server(name), message, rows)
    return sum(len(p) for p in expiring.values()) + sum(len(r) for r in delayed.values())


def _notify_delay(tx: Tx, scenario: Scenario, server: Server, message: str,
                  rows: list[Candidate]) -> None:
    statuses = [
        dsn.RecipientStatus(
            r.rcpt, "delayed", _delay_status(r.queue),
            f"smtp; 400 {_delay_status(r.queue)} {r.last_error or 'queued'}",
            "", tx.now, dsn.expiry_due(r.accepted_at, server, r.priority, scenario.defaults))
        for r in rows
    ]
    expiry.mark_delay_notified(tx, [r.id for r in rows], tx.now)
    categorizer.send_dsn(tx, scenario, server, message, statuses, "delay notification",
                         "still queued on " + server.name)


def next_due(db: Read, scenario: Scenario, after: float) -> float | None:
    """The first time after ``after`` at which a delay notification or an expiry falls due
    (for ``Lab.advance``, which stops at every due time on its way): per server, the first
    pair by arrival past each bound, found by one step along the arrival indexes."""
    defaults = scenario.defaults
    times: list[float] = []
    for server in scenario.servers:
        delay = dsn.delay_due(0.0, server, defaults)
        if delay is not None:
            arrival = expiry.first_awaiting_delay(db, server.name, after - delay)
            if arrival is not None:
                times.append(arrival + delay)
        # 5.5 expires by priority (the MTA message timeout), the others by arrival alone.
        classes: tuple[str | None, ...] = (
            PRIORITIES if not server.version.smtp_transport else (None,))
        for priority in classes:
            expiry_offset = dsn.expiry_due(0.0, server, priority or "normal", defaults)
            arrival = expiry.first_arrival(db, server.name, after - expiry_offset, priority)
            if arrival is not None:
                times.append(arrival + expiry_offset)
    # Rounding must never hand back a time that is not after ``after``: advance would loop.
    return min((t for t in times if t > after), default=None)
