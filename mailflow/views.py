"""Read models: the store in, the JSON documents the API and the CLI show out.

Every function takes a read connection and returns plain data; none writes.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from mailflow import moves
from mailflow.errors import NotFound
from mailflow.queue_views import find_message
from routing import queues
from stores import directory
from stores.messages import FINAL
from stores.topology import Scenario


def topology(conn: sqlite3.Connection, scenario: Scenario) -> dict[str, Any]:
    return {
        "name": scenario.name,
        "organization": scenario.organization,
        "domains": list(scenario.domains),
        "sites": list(scenario.sites),
        "servers": [
            {"name": s.name, "version": s.version, "site": s.site, "smtp_port": s.smtp_port}
            for s in scenario.servers
        ],
        "connectors": [dict(r) for r in conn.execute("SELECT * FROM connectors ORDER BY id")],
        "rpc": [{"a": r["server_a"], "b": r["server_b"], "allowed": bool(r["allowed"])}
                for r in conn.execute("SELECT * FROM rpc")],
    }


def store_name(server: str) -> str:
    return f"First Storage Group\\Mailbox Store ({server})"


def _mailbox_row(conn: sqlite3.Connection, address: str) -> sqlite3.Row:
    home = directory.lookup(conn, address)
    row: sqlite3.Row | None = None if home is None else conn.execute(
        "SELECT * FROM mailboxes WHERE address=?", (home.address,)
    ).fetchone()
    if row is None:
        raise NotFound(f"no mailbox {address!r}")
    return row


def mailbox(conn: sqlite3.Connection, address: str) -> dict[str, Any]:
    row = _mailbox_row(conn, address)
    doc = directory.describe(row)
    transit = conn.execute(
        "SELECT server, in_transit FROM store_mailboxes WHERE mailbox=?", (row["address"],)
    ).fetchall()
    doc["store"] = store_name(row["server"])
    # The flag of the store mail is delivered to; "stores" shows a move's target copy too.
    doc["in_transit"] = any(r[1] for r in transit if r[0] == row["server"])
    doc["stores"] = [{"server": r[0], "in_transit": bool(r[1])} for r in transit]
    doc["message_count"] = conn.execute(
        "SELECT COUNT(*) FROM items WHERE mailbox=? AND server=?", (row["address"], row["server"])
    ).fetchone()[0]
    return doc


def mailboxes(conn: sqlite3.Connection, limit: int, offset: int) -> list[dict[str, Any]]:
    counts = dict(conn.execute(
        "SELECT i.mailbox, COUNT(*) FROM items i JOIN mailboxes m ON m.address = i.mailbox"
        " AND m.server = i.server GROUP BY i.mailbox"
    ).fetchall())
    transit = {r[0] for r in conn.execute(
        "SELECT s.mailbox FROM store_mailboxes s JOIN mailboxes m ON m.address = s.mailbox"
        " AND m.server = s.server WHERE s.in_transit = 1"
    )}
    return [
        {
            "address": r["address"],
            "display_name": r["display_name"],
            "server": r["server"],
            "in_transit": r["address"] in transit,
            "message_count": counts.get(r["address"], 0),
        }
        for r in conn.execute(
            "SELECT * FROM mailboxes ORDER BY address LIMIT ? OFFSET ?", (limit, offset)
        )
    ]


def mailbox_messages(
    conn: sqlite3.Connection, address: str, limit: int, offset: int
) -> list[dict[str, Any]]:
    row = _mailbox_row(conn, address)
    return [
        dict(r)
        for r in conn.execute(
            "SELECT i.id AS item, i.folder, i.message AS id, m.message_id, m.mail_from,"
            " m.subject, i.size, i.delivered_at FROM items i LEFT JOIN messages m"
            " ON m.id = i.message WHERE i.mailbox=? AND i.server=? ORDER BY i.id"
            " LIMIT ? OFFSET ?",
            (row["address"], row["server"], limit, offset),
        )
    ]


def message(conn: sqlite3.Connection, ident: str) -> dict[str, Any]:
    """One message by queue id or Message-ID header: recipients, trace, DSNs about it."""
    message_id, others = find_message(conn, ident)
    row = conn.execute(
        "SELECT id, message_id, mail_from, subject, size, accepted_server, accepted_at,"
        " accepted_real, dsn_of, dsn_summary FROM messages WHERE id=?", (message_id,)
    ).fetchone()
    doc = dict(row)
    doc["same_message_id"] = others
    doc["dsns"] = [dict(r) for r in conn.execute(
        "SELECT id, dsn_summary AS summary, accepted_server AS server, accepted_at FROM messages"
        " WHERE dsn_of=? ORDER BY accepted_at, rowid", (message_id,))]
    doc["recipients"] = [
        {**dict(r), "frozen": bool(r["frozen"]), "final": r["state"] in FINAL}
        for r in conn.execute(
            "SELECT rcpt, mailbox, state, server, queue, attempts, next_attempt, last_error,"
            " frozen FROM pairs WHERE message=? ORDER BY id", (message_id,)
        )
    ]
    doc["trace"] = [
        dict(r)
        for r in conn.execute(
            "SELECT server, rcpt, stage, detail, sim_time, real_time FROM trace WHERE message=?"
            " ORDER BY id", (message_id,)
        )
    ]
    return doc


def raw_message(conn: sqlite3.Connection, ident: str) -> bytes:
    message_id, _ = find_message(conn, ident)
    row = conn.execute("SELECT raw FROM messages WHERE id=?", (message_id,)).fetchone()
    return bytes(row[0])


def move(conn: sqlite3.Connection, move_id: str, now: float) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM moves WHERE id=?", (move_id,)).fetchone()
    if row is None:
        raise NotFound(f"no move {move_id!r}")
    return moves.describe(row, now)


def move_list(
    conn: sqlite3.Connection, now: float, limit: int, offset: int
) -> list[dict[str, Any]]:
    return [
        moves.describe(r, now)
        for r in conn.execute(
            "SELECT * FROM moves ORDER BY created_at, id LIMIT ? OFFSET ?", (limit, offset)
        )
    ]


def events(conn: sqlite3.Connection, limit: int, offset: int, after: int) -> list[dict[str, Any]]:
    return [
        dict(r)
        for r in conn.execute(
            "SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ? OFFSET ?", (after, limit, offset)
        )
    ]


def status(conn: sqlite3.Connection, scenario: Scenario, now: float) -> dict[str, Any]:
    rows = queues.list_queues(conn, scenario, now)
    return {
        "scenario": scenario.name,
        "clock": now,
        "in_transit": [
            {"mailbox": r[0], "server": r[1]}
            for r in conn.execute(
                "SELECT mailbox, server FROM store_mailboxes WHERE in_transit=1 ORDER BY mailbox"
            )
        ],
        "queued": sum(r["message_count"] for r in rows),
        "queues": {r["identity"]: r["message_count"] for r in rows if r["message_count"]},
        "moves": dict(
            conn.execute("SELECT status, COUNT(*) FROM moves GROUP BY status").fetchall()
        ),
    }
