"""The queue and message listings read from the store: Find Messages, search, qshape rows.

In: a read handle and the request's filters (substrings to look for, matched
case-insensitively and literally). Out: records: the messages waiting in one
queue (``queue_messages``), the queue ids a queue id or Message-ID header names
(``message_ids``), the messages a search finds with where each recipient is
(``search``), and (recipient, sender, queued_at) of every queued recipient for
``mailflow qshape`` (``queued_recipients``). Nothing here writes.
"""

from __future__ import annotations

from typing import NamedTuple

from stores import messages
from stores.backend import Read


def _like(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere, with its own % and _ taken literally."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class QueueMessage(NamedTuple):
    """One message waiting in a queue, with its recipients in that queue."""

    id: str
    message_id: str
    sender: str
    rcpts: list[str]
    subject: str
    size: int
    arrival_time: float
    attempts: int
    next_attempt: float | None
    last_error: str | None
    frozen: bool
    dsn_of: str | None


# Find Messages by state (ESM 2003): frozen, or waiting to retry after a failed attempt.
STATES = {"frozen": " AND p.frozen = 1",
          "retry": " AND p.frozen = 0 AND (p.attempts > 0 OR p.last_error IS NOT NULL)"}


def queue_messages(
    conn: Read, server: str, queue: str, limit: int, offset: int, *,
    sender: str | None = None, recipient: str | None = None, queued_by: float | None = None,
    state: str | None = None,
) -> list[QueueMessage]:
    """The messages waiting in one queue, oldest first. Filters: the sender or a recipient
    contains the text, arrived in the queue at ``queued_by`` or earlier, a recipient in
    ``state`` (a key of ``STATES``)."""
    where, having, scope = STATES[state] if state else "", "", "p.server=? AND p.queue=?"
    args: list[object] = [server, queue]
    if sender is None and recipient is None and state is None:
        # The common case, a page of a deep queue: its messages in arrival order from the
        # queue's age index, so a page costs what precedes it, not the whole queue.
        page_ids = _page_of_queue(conn, server, queue, limit, offset, queued_by)
        where += f" AND p.message IN ({','.join('?' * len(page_ids))})"
        args.extend(page_ids)
        limit, offset = len(page_ids), 0
        scope = "+p.server=? AND +p.queue=?"  # seek each message's pairs, not the queue
    if sender is not None:
        where += " AND lower(m.mail_from) LIKE ? ESCAPE '\\'"
        args.append(_like(sender))
    if queued_by is not None:
        where += " AND p.queued_at <= ?"
        args.append(queued_by)
    if recipient is not None:
        having = " HAVING MAX(CASE WHEN lower(p.rcpt) LIKE ? ESCAPE '\\' THEN 1 ELSE 0 END) = 1"
        args.append(_like(recipient))
    rows = conn.execute(
        "SELECT m.id, m.message_id, m.mail_from AS sender, GROUP_CONCAT(p.rcpt, char(10))"
        " AS rcpts, m.subject, m.size, MIN(p.queued_at) AS arrival_time, MAX(p.attempts)"
        " AS attempts, MIN(p.next_attempt) AS next_attempt, MAX(p.last_error) AS last_error,"
        " MIN(p.frozen) AS frozen, m.dsn_of FROM pairs p JOIN messages m ON m.id = p.message"
        f" WHERE {scope}{where} GROUP BY m.id{having}"
        " ORDER BY arrival_time, MIN(p.id) LIMIT ? OFFSET ?",
        (*args, limit, offset),
    ).fetchall()
    return [QueueMessage(r["id"], r["message_id"], r["sender"], sorted(r["rcpts"].split("\n")),
                         r["subject"], r["size"], r["arrival_time"], r["attempts"],
                         r["next_attempt"], r["last_error"], bool(r["frozen"]), r["dsn_of"])
            for r in rows]


def _page_of_queue(conn: Read, server: str, queue: str, limit: int, offset: int,
                   queued_by: float | None) -> list[str]:
    """The ids of messages ``offset`` to ``offset + limit`` of a queue in arrival order (the
    first of each message's pairs in ``pairs_by_age`` order), read up to that page only."""
    bound = "" if queued_by is None else " AND queued_at <= ?"
    args = (server, queue) if queued_by is None else (server, queue, queued_by)
    seen: dict[str, None] = {}
    for (message,) in conn.execute(
            "SELECT message FROM pairs INDEXED BY pairs_by_age WHERE server=? AND queue=?"
            f"{bound} ORDER BY queued_at, id", args):
        seen.setdefault(message)
        if len(seen) >= offset + limit:
            break
    return list(seen)[offset:offset + limit]


def message_ids(conn: Read, ident: str) -> list[str]:
    """Queue ids of the message named by queue id or by Message-ID header (with or without
    angle brackets), oldest first."""
    if messages.exists(conn, ident):
        return [ident]
    return [r[0] for r in conn.execute(
        "SELECT id FROM messages WHERE message_id IN (?, ?) ORDER BY accepted_at, rowid",
        messages.message_id_forms(ident),
    )]


class Place(NamedTuple):
    """Where one recipient of a message is."""

    rcpt: str
    state: str
    server: str
    queue: str | None


class FoundMessage(NamedTuple):
    id: str
    message_id: str
    sender: str
    subject: str
    size: int
    accepted_server: str
    accepted_at: float
    dsn_of: str | None
    recipients: list[Place]


def search(
    conn: Read, limit: int, offset: int, *, text: str | None = None,
    sender: str | None = None, recipient: str | None = None, subject: str | None = None,
) -> list[FoundMessage]:
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
    return [FoundMessage(r["id"], r["message_id"], r["sender"], r["subject"], r["size"],
                         r["accepted_server"], r["accepted_at"], r["dsn_of"],
                         _places(conn, r["id"]))
            for r in rows]


def _places(conn: Read, message: str) -> list[Place]:
    return [Place(*p) for p in conn.execute(
        "SELECT rcpt, state, server, queue FROM pairs WHERE message=? ORDER BY id", (message,))]


def queued_recipients(conn: Read, server: str | None = None, queue: str | None = None
                      ) -> list[tuple[str, str, float]]:
    """(recipient, sender, queued_at) of every queued recipient, on ``server`` and in
    ``queue`` when given."""
    where, args = "p.queue IS NOT NULL", []
    if server is not None:
        where += " AND p.server = ?"
        args.append(server)
    if queue is not None:
        where += " AND p.queue = ?"
        args.append(queue)
    return [(r[0], r[1], r[2]) for r in conn.execute(
        "SELECT p.rcpt, m.mail_from, p.queued_at FROM pairs p JOIN messages m"
        f" ON m.id = p.message WHERE {where}", args)]
