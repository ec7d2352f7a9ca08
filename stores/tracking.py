"""The message tracking log, derived from the trace, in Get-MessageTrackingLog's fields.

In: a read connection and a filter (queue id, sender, recipient, server, event id, a time
window) with a row cap. Out: one row per trace entry that Exchange's tracking log would
have written, in the order they happened, with Exchange's field names (``Timestamp``,
``EventId``, ``Source``, ``InternalMessageId``, ``MessageId``, ``Recipients``,
``Reference`` ...). ``STAGES`` maps each trace stage to its (EventId, Source); stages with
no tracking event (a freeze, a categorizer decision) are left out. A DSN's row names the
DSN it sent in ``Reference``; the DSN's own RECEIVE row names the original.
``csv_text`` writes rows as CSV. docs/tracking-and-exports.md lists the mapping.
"""

from __future__ import annotations

import csv
import datetime
import io
from dataclasses import dataclass
from typing import Any

from stores.backend import Read

# Trace stage -> (EventId, Source) of Get-MessageTrackingLog.
STAGES: dict[str, tuple[str, str]] = {
    "accepted": ("RECEIVE", "SMTP"),
    "received": ("RECEIVE", "SMTP"),
    "relayed": ("SEND", "SMTP"),
    "retry": ("DEFER", "SMTP"),
    "deferred": ("DEFER", "STOREDRIVER"),
    "held": ("DEFER", "STOREDRIVER"),
    "released": ("RESUBMIT", "STOREDRIVER"),
    "delivered": ("DELIVER", "STOREDRIVER"),
    "ndr": ("FAIL", "STOREDRIVER"),
    "deleted": ("FAIL", "ADMIN"),
    "dsn": ("DSN", "DSN"),
    "expanded": ("EXPAND", "ROUTING"),  # a distribution list expanded (issue 17)
}
EVENT_IDS = ("RECEIVE", "SUBMIT", "DEFER", "DELIVER", "SEND", "FAIL", "DSN", "RESUBMIT",
             "REDIRECT", "EXPAND")
# The columns of the CSV export, in Exchange's order.
FIELDS = ("Timestamp", "ServerHostname", "Source", "EventId", "InternalMessageId",
          "MessageId", "Recipients", "RecipientStatus", "TotalBytes", "Reference",
          "MessageSubject", "Sender", "SourceContext")


@dataclass(frozen=True)
class Filter:
    message: str | None = None
    sender: str | None = None
    recipient: str | None = None
    server: str | None = None
    event_id: str | None = None
    start: float | None = None
    end: float | None = None
    limit: int = 1000


def _where(query: Filter) -> tuple[str, list[Any]]:
    stages = [stage for stage, (event, _) in STAGES.items()
              if query.event_id is None or event == query.event_id.upper()]
    clauses = [f"t.stage IN ({','.join('?' * len(stages))})"] if stages else ["1=0"]
    args: list[Any] = list(stages)
    for clause, value in (("t.message = ?", query.message),
                          ("lower(m.mail_from) = lower(?)", query.sender),
                          ("lower(t.rcpt) = lower(?)", query.recipient),
                          ("upper(t.server) = upper(?)", query.server),
                          ("t.sim_time >= ?", query.start),
                          ("t.sim_time <= ?", query.end)):
        if value is not None:
            clauses.append(clause)
            args.append(value)
    return " AND ".join(clauses), args


def _reference(row: Any) -> str:
    """A DSN row names the DSN it sent (the queue id its detail gives after "sent as",
    as routing.categorizer.send_dsn writes it; tests/test_tracking.py holds the two
    together); a DSN's own rows name the message it is about."""
    if row["stage"] == "dsn" and " sent as " in row["detail"]:
        return str(row["detail"].split(" sent as ", 1)[1].split(" ", 1)[0])
    return str(row["dsn_of"] or "")


def _timestamp(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")


def log(conn: Read, query: Filter, domain: str) -> list[dict[str, Any]]:
    """The tracking log rows ``query`` selects, oldest first, at most ``query.limit``."""
    where, args = _where(query)
    rows = conn.execute(
        "SELECT t.message, t.rcpt, t.server, t.stage, t.detail, t.sim_time, m.message_id,"
        " m.mail_from, m.subject, m.size, m.dsn_of FROM trace t JOIN messages m"
        f" ON m.id = t.message WHERE {where} ORDER BY t.id LIMIT ?", (*args, query.limit))
    out = []
    for row in rows:
        event, source = STAGES[row["stage"]]
        out.append({
            "Timestamp": _timestamp(row["sim_time"]),
            "ServerHostname": f"{row['server']}.{domain}",
            "Source": source,
            "EventId": event,
            "InternalMessageId": row["message"],
            "MessageId": row["message_id"],
            "Recipients": [row["rcpt"]] if row["rcpt"] else [],
            "RecipientStatus": [row["detail"]] if row["detail"] else [],
            "TotalBytes": row["size"],
            "Reference": _reference(row),
            "MessageSubject": row["subject"],
            "Sender": row["mail_from"],
            "SourceContext": row["stage"],
        })
    return out


def csv_text(rows: list[dict[str, Any]]) -> str:
    """The rows as CSV, a header line of ``FIELDS`` first; list fields joined by ``;``."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: ";".join(value) if isinstance(value, list) else value
                         for key, value in row.items()})
    return out.getvalue()
