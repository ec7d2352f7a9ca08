"""Read models of queues and message tracking: the store in, plain JSON-ready data out.

In: a read handle and the request's filters, passed on to ``stores.listing``.
Out: the messages of one queue with Queue Viewer's Find Messages filters
(``queue_messages``), a message found by queue id or Message-ID header
(``find_message``), the message search of
``mailflow messages --search`` (``search_messages``), and the Postfix-style age
table of ``mailflow qshape`` (``qshape``, its arithmetic in pure functions).
None of them writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mailflow.errors import Invalid, NotFound
from stores import listing
from stores.backend import Read
from stores.snapshot import AGE_MINUTES
from stores.topology import Scenario

# Postfix qshape's columns: upper bounds in minutes of each age bucket, then "1280+".
BUCKETS = AGE_MINUTES
LABELS = ("T", *(str(b) for b in BUCKETS), f"{BUCKETS[-1]}+")
GROUPINGS = ("recipient-domain", "recipient", "sender")


def queue_messages(
    db: Read, server: str, queue: str, now: float, limit: int, offset: int, *,
    sender: str | None = None, recipient: str | None = None, older_than: float | None = None,
) -> list[dict[str, Any]]:
    """The messages waiting in one queue (``server`` as the scenario spells it), oldest
    first, one row per message with its recipients in that queue. Filters (Find Messages):
    the sender or a recipient contains the text (case-insensitive), arrived in the queue at
    least ``older_than`` seconds ago."""
    queued_by = None if older_than is None else now - older_than
    result = []
    for row in listing.queue_messages(db, server, queue, limit, offset, sender=sender,
                                      recipient=recipient, queued_by=queued_by):
        doc = row._asdict()
        del doc["rcpts"]
        doc.update(recipients=row.rcpts, recipient=", ".join(row.rcpts),
                   age_seconds=max(0.0, now - row.arrival_time))
        result.append(doc)
    return result


def find_message(db: Read, ident: str) -> tuple[str, list[str]]:
    """The queue id of the message ``ident`` names and of any others with the same
    Message-ID header; NotFound when there is none."""
    found = listing.message_ids(db, ident)
    if not found:
        raise NotFound(f"no message {ident!r}")
    return found[0], found[1:]


def search_messages(
    db: Read, limit: int, offset: int, *, text: str | None = None,
    sender: str | None = None, recipient: str | None = None, subject: str | None = None,
) -> list[dict[str, Any]]:
    """Messages whose sender, a recipient or subject contains ``text``, narrowed by the
    other filters (each a case-insensitive substring), in arrival order."""
    found = listing.search(db, limit, offset, text=text, sender=sender,
                           recipient=recipient, subject=subject)
    return [{**m._asdict(), "recipients": [p._asdict() for p in m.recipients]} for m in found]


# -- qshape -------------------------------------------------------------------------------------


def bucket(age_seconds: float) -> int:
    """Index of the qshape column of a recipient this old: the first bucket whose bound (in
    minutes) it has not reached, or the last, "1280+"."""
    minutes = max(0.0, age_seconds) / 60
    for i, bound in enumerate(BUCKETS):
        if minutes < bound:
            return i
    return len(BUCKETS)


def shape(items: Iterable[tuple[str, float]]) -> list[dict[str, Any]]:
    """Rows of the qshape table from (destination, age in seconds) per queued recipient:
    TOTAL first, then destinations by count (most first) and name."""
    rows: dict[str, list[int]] = {}
    total = [0] * (len(BUCKETS) + 1)
    for key, age in items:
        counts = rows.setdefault(key, [0] * (len(BUCKETS) + 1))
        counts[bucket(age)] += 1
        total[bucket(age)] += 1
    ordered = sorted(rows.items(), key=lambda kv: (-sum(kv[1]), kv[0]))
    return [{"destination": name, "total": sum(counts), "buckets": counts}
            for name, counts in [("TOTAL", total), *ordered]]


def _key(by: str, rcpt: str, sender: str) -> str:
    if by == "sender":
        return sender or "MAILER-DAEMON"  # the null sender, as Postfix names it
    if by == "recipient":
        return rcpt
    return rcpt.rpartition("@")[2]


def qshape(db: Read, scenario: Scenario, now: float, *,
           server: str | None = None, queue: str | None = None,
           by: str = "recipient-domain") -> dict[str, Any]:
    """The age table of the recipients queued on one server (or all), in one queue (or
    all), by recipient domain, recipient or sender; ages are time spent in the queue."""
    if by not in GROUPINGS:
        raise Invalid(f"by must be one of {', '.join(GROUPINGS)}")
    if server is not None:
        if not scenario.has_server(server):
            raise NotFound(f"no server {server!r}")
        server = scenario.server(server).name
    items = [(_key(by, rcpt, sender), now - queued_at)
             for rcpt, sender, queued_at in listing.queued_recipients(db, server, queue)]
    return {"server": server, "queue": queue, "by": by, "columns": list(LABELS),
            "rows": shape(items)}


def render_qshape(doc: dict[str, Any]) -> str:
    """The table as Postfix's qshape prints it: right-aligned columns, T then the buckets."""
    lines = [["", *doc["columns"]]]
    lines += [[r["destination"], str(r["total"]), *map(str, r["buckets"])] for r in doc["rows"]]
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join(" ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True))
                     for line in lines)
