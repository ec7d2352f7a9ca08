"""Read-model queries: the store in, plain rows for the API's and the CLI's documents out.

In: a read connection and what a page asks for (an address, a queue id, limit
and offset). Out: dicts and lists in the shapes ``mailflow.views`` returns;
``None`` or an empty list where nothing matches (the layer above says
"not found"). Nothing here writes.
"""

from __future__ import annotations

from typing import Any

from stores import directory
from stores.backend import Read


def rpc(conn: Read) -> list[dict[str, Any]]:
    return [{"a": r["server_a"], "b": r["server_b"], "allowed": bool(r["allowed"])}
            for r in conn.execute("SELECT * FROM rpc")]


def store_name(server: str, home_mdb: str) -> str:
    """The mailbox store a mailbox's homeMDB names, as its admin tool named it: 5.5 had one
    "Private Information Store" per server and no storage groups (its homeMDB is in 5.5 DS
    form, ``.../cn=Microsoft Private MDB``); 2000 and 2003 name it as System Manager does."""
    if home_mdb.endswith(directory.PRIVATE_MDB_55):
        return "Private Information Store"
    return f"First Storage Group\\Mailbox Store ({server})"


def _mailbox_row(conn: Read, address: str) -> Any:
    home = directory.lookup(conn, address)
    found: Any = None if home is None else conn.execute(
        "SELECT * FROM mailboxes WHERE address=?", (home.address,)).fetchone()
    return found


def mailbox(conn: Read, address: str) -> dict[str, Any] | None:
    """The directory object of the mailbox ``address`` names (primary or proxy address),
    with its PR_IN_TRANSIT in each store that holds it and its item count at home."""
    row = _mailbox_row(conn, address)
    if row is None:
        return None
    doc = directory.describe(row)
    transit = conn.execute(
        "SELECT server, in_transit FROM store_mailboxes WHERE mailbox=?", (row["address"],)
    ).fetchall()
    doc["store"] = store_name(row["server"], row["home_mdb"])
    # The flag of the store mail is delivered to; "stores" shows a move's target copy too.
    doc["in_transit"] = any(r[1] for r in transit if r[0] == row["server"])
    counts = dict(conn.execute("SELECT server, COUNT(*) FROM items WHERE mailbox=?"
                               " GROUP BY server", (row["address"],)).fetchall())
    # Items per store: a split mailbox (KB 299473) has them in two.
    doc["stores"] = [{"server": r[0], "in_transit": bool(r[1]), "items": counts.get(r[0], 0)}
                     for r in transit]
    doc["message_count"] = conn.execute(
        "SELECT COUNT(*) FROM items WHERE mailbox=? AND server=?", (row["address"], row["server"])
    ).fetchone()[0]
    return doc


def mailboxes(conn: Read, limit: int, offset: int) -> list[dict[str, Any]]:
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


def mailbox_items(
    conn: Read, address: str, limit: int, offset: int
) -> list[dict[str, Any]] | None:
    """The items in the home store of the mailbox ``address`` names; None: no such mailbox."""
    row = _mailbox_row(conn, address)
    if row is None:
        return None
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


def message(conn: Read, message_id: str) -> dict[str, Any]:
    """A message's header fields, by queue id."""
    row = conn.execute(
        "SELECT id, message_id, mail_from, subject, size, accepted_server, accepted_at,"
        " accepted_real, dsn_of, dsn_summary FROM messages WHERE id=?", (message_id,)
    ).fetchone()
    return dict(row)


def dsns(conn: Read, message_id: str) -> list[dict[str, Any]]:
    """The DSNs sent about a message, oldest first."""
    return [dict(r) for r in conn.execute(
        "SELECT id, dsn_summary AS summary, accepted_server AS server, accepted_at FROM messages"
        " WHERE dsn_of=? ORDER BY accepted_at, rowid", (message_id,))]


def recipients(conn: Read, message_id: str) -> list[dict[str, Any]]:
    """The message's pairs in order, ``frozen`` as a bool."""
    return [
        {**dict(r), "frozen": bool(r["frozen"])}
        for r in conn.execute(
            "SELECT rcpt, mailbox, state, server, queue, attempts, next_attempt, last_error,"
            " frozen FROM pairs WHERE message=? ORDER BY id", (message_id,)
        )
    ]


def trace(conn: Read, message_id: str) -> list[dict[str, Any]]:
    return [
        dict(r)
        for r in conn.execute(
            "SELECT server, rcpt, stage, detail, sim_time, real_time FROM trace WHERE message=?"
            " ORDER BY id", (message_id,)
        )
    ]


def raw_message(conn: Read, message_id: str) -> bytes:
    row = conn.execute("SELECT raw FROM messages WHERE id=?", (message_id,)).fetchone()
    return bytes(row[0])


def events(conn: Read, limit: int, offset: int, after: int) -> list[dict[str, Any]]:
    return [
        dict(r)
        for r in conn.execute(
            "SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ? OFFSET ?", (after, limit, offset)
        )
    ]


def in_transit(conn: Read) -> list[dict[str, Any]]:
    return [
        {"mailbox": r[0], "server": r[1]}
        for r in conn.execute(
            "SELECT mailbox, server FROM store_mailboxes WHERE in_transit=1 ORDER BY mailbox"
        )
    ]


def move_counts(conn: Read) -> dict[str, int]:
    """Moves by status."""
    return dict(conn.execute("SELECT status, COUNT(*) FROM moves GROUP BY status").fetchall())
