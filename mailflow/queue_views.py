"""Read models of queues and message tracking: the store in, plain JSON-ready data out.

In: a read connection and the request's filters. Out: the messages of one queue
with Queue Viewer's Find Messages filters (``queue_messages``), a message found
by queue id or Message-ID header (``find_message``), the message search of
``mailflow messages --search`` (``search_messages``), and the Postfix-style age
table of ``mailflow qshape`` (``qshape``, its arithmetic in pure functions).
None of them writes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from mailflow.errors import Invalid, NotFound
from stores.topology import Scenario

# Postfix qshape's columns: upper bounds in minutes of each age bucket, then "1280+".
BUCKETS = (5, 10, 20, 40, 80, 160, 320, 640, 1280)
LABELS = ("T", *(str(b) for b in BUCKETS), f"{BUCKETS[-1]}+")
GROUPINGS = ("recipient-domain", "recipient", "sender")


def _like(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere, with its own % and _ taken literally."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def queue_messages(
    conn: sqlite3.Connection, scenario: Scenario, server: str, queue: str, now: float,
    limit: int, offset: int, *, sender: str | None = None, recipient: str | None = None,
    older_than: float | None = None,
) -> list[dict[str, Any]]:
    """The messages waiting in one queue, oldest first, one row per message with its
    recipients in that queue. Filters (Find Messages): the sender or a recipient contains
    the text (case-insensitive), arrived in the queue at least ``older_than`` seconds ago."""
    if not scenario.has_server(server):
        raise NotFound(f"no server {server!r}")
    server = scenario.server(server).name
    where, having = "", ""
    args: list[object] = [server, queue]
    if sender is not None:
        where += " AND lower(m.mail_from) LIKE ? ESCAPE '\\'"
        args.append(_like(sender))
    if older_than is not None:
        where += " AND p.queued_at <= ?"
        args.append(now - older_than)
    if recipient is not None:
        having = " HAVING SUM(lower(p.rcpt) LIKE ? ESCAPE '\\') > 0"
        args.append(_like(recipient))
    rows = conn.execute(
        "SELECT m.id, m.message_id, m.mail_from AS sender, GROUP_CONCAT(p.rcpt, char(10))"
        " AS rcpts, m.subject, m.size, MIN(p.queued_at) AS arrival_time, MAX(p.attempts)"
        " AS attempts, MIN(p.next_attempt) AS next_attempt, MAX(p.last_error) AS last_error,"
        " MIN(p.frozen) AS frozen, m.dsn_of FROM pairs p JOIN messages m ON m.id = p.message"
        f" WHERE p.server=? AND p.queue=?{where} GROUP BY m.id{having}"
        " ORDER BY arrival_time, MIN(p.id) LIMIT ? OFFSET ?",
        (*args, limit, offset),
    ).fetchall()
    result = []
    for r in rows:
        rcpts = sorted(r["rcpts"].split("\n"))
        doc = dict(r)
        del doc["rcpts"]
        doc.update(recipients=rcpts, recipient=", ".join(rcpts), frozen=bool(r["frozen"]),
                   age_seconds=max(0.0, now - r["arrival_time"]))
        result.append(doc)
    return result


def _message_ids(conn: sqlite3.Connection, ident: str) -> list[str]:
    """Queue ids of the message named by queue id or by Message-ID header (with or without
    angle brackets), oldest first."""
    if conn.execute("SELECT 1 FROM messages WHERE id=?", (ident,)).fetchone():
        return [ident]
    header = ident if ident.startswith("<") else f"<{ident}>"
    return [r[0] for r in conn.execute(
        "SELECT id FROM messages WHERE message_id IN (?, ?) ORDER BY accepted_at, rowid",
        (ident, header),
    )]


def find_message(conn: sqlite3.Connection, ident: str) -> tuple[str, list[str]]:
    """The queue id of the message ``ident`` names and of any others with the same
    Message-ID header; NotFound when there is none."""
    found = _message_ids(conn, ident)
    if not found:
        raise NotFound(f"no message {ident!r}")
    return found[0], found[1:]


def search_messages(
    conn: sqlite3.Connection, limit: int, offset: int, *, text: str | None = None,
    sender: str | None = None, recipient: str | None = None, subject: str | None = None,
) -> list[dict[str, Any]]:
    """Messages whose sender, a recipient or subject contains ``text``, narrowed by the
    other filters (each a case-insensitive substring), in arrival order."""
    where, args = [], []
    rcpt_match = "EXISTS (SELECT 1 FROM pairs q WHERE q.message = m.id AND lower(q.rcpt)" \
        " LIKE ? ESCAPE '\\')"
    if text:
        where.append(f"(lower(m.mail_from) LIKE ? ESCAPE '\\' OR lower(m.subject) LIKE ?"
                     f" ESCAPE '\\' OR {rcpt_match})")
        args += [_like(text)] * 3
    for column, value in (("m.mail_from", sender), ("m.subject", subject)):
        if value:
            where.append(f"lower({column}) LIKE ? ESCAPE '\\'")
            args.append(_like(value))
    if recipient:
        where.append(rcpt_match)
        args.append(_like(recipient))
    rows = conn.execute(
        "SELECT m.id, m.message_id, m.mail_from AS sender, m.subject, m.size,"
        " m.accepted_server, m.accepted_at, m.dsn_of FROM messages m"
        f" {'WHERE ' + ' AND '.join(where) if where else ''}"
        " ORDER BY m.accepted_at, m.rowid LIMIT ? OFFSET ?", (*args, limit, offset),
    ).fetchall()
    result = []
    for r in rows:
        doc = dict(r)
        doc["recipients"] = [dict(p) for p in conn.execute(
            "SELECT rcpt, state, server, queue FROM pairs WHERE message=? ORDER BY id",
            (r["id"],))]
        result.append(doc)
    return result


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


def qshape(conn: sqlite3.Connection, scenario: Scenario, now: float, *,
           server: str | None = None, queue: str | None = None,
           by: str = "recipient-domain") -> dict[str, Any]:
    """The age table of the recipients queued on one server (or all), in one queue (or
    all), by recipient domain, recipient or sender; ages are time spent in the queue."""
    if by not in GROUPINGS:
        raise Invalid(f"by must be one of {', '.join(GROUPINGS)}")
    where, args = "p.queue IS NOT NULL", []
    if server is not None:
        if not scenario.has_server(server):
            raise NotFound(f"no server {server!r}")
        server = scenario.server(server).name
        where += " AND p.server = ?"
        args.append(server)
    if queue is not None:
        where += " AND p.queue = ?"
        args.append(queue)
    items = [(_key(by, r[0], r[1]), now - r[2]) for r in conn.execute(
        "SELECT p.rcpt, m.mail_from, p.queued_at FROM pairs p JOIN messages m"
        f" ON m.id = p.message WHERE {where}", args)]
    return {"server": server, "queue": queue, "by": by, "columns": list(LABELS),
            "rows": shape(items)}


def render_qshape(doc: dict[str, Any]) -> str:
    """The table as Postfix's qshape prints it: right-aligned columns, T then the buckets."""
    lines = [["", *doc["columns"]]]
    lines += [[r["destination"], str(r["total"]), *map(str, r["buckets"])] for r in doc["rows"]]
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join(" ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True))
                     for line in lines)
