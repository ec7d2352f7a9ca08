"""Mailbox moves: a request in; PR_IN_TRANSIT, the directory update and released mail out.

In: ``start``, ``complete`` and ``fail`` from the API, and ``run_due`` from
the lab's scheduler. Out: the move's row (status, history), the store flags
of source and target, the directory update of seed 000 step 6, and the
release of every pair parked for the mailbox, handed to the categorizer.

This is the basic engine every version shares; the version-faithful engines
(2003 wizard, 2007 Move-Mailbox, 2010 MRS) are built on the same state machine.
A move without ``hold`` completes by itself ``duration()`` after it begins.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from typing import Any

from mailflow.errors import Conflict, Invalid, NotFound
from mailflow.moves.states import FINAL, MoveStatus, transition
from routing import categorizer, mta
from stores import directory
from stores import mailbox as stores_mailbox
from stores.db import Tx
from stores.topology import Defaults, Scenario

ENGINE = "basic"
# mailflow's own event ids for move milestones (Exchange logged these per version).
EVENT_STARTED, EVENT_COMPLETED, EVENT_FAILED = 1001, 1002, 1003


def duration(defaults: Defaults, mailbox_bytes: int) -> float:
    """Simulated seconds a move without hold takes: a fixed start-up plus the copy."""
    return defaults.move_base_seconds + mailbox_bytes / defaults.move_bytes_per_second


def _row(conn: sqlite3.Connection, move_id: str) -> sqlite3.Row:
    row: sqlite3.Row | None = conn.execute("SELECT * FROM moves WHERE id=?", (move_id,)).fetchone()
    if row is None:
        raise NotFound(f"no move {move_id!r}")
    return row


def _set_status(tx: Tx, row: sqlite3.Row, new: MoveStatus, detail: str, **fields: Any) -> None:
    transition(row["id"], MoveStatus(row["status"]), new)
    history = json.loads(row["history"])
    history.append({"status": new.value, "status_detail": detail, "time": tx.now})
    assignments = {"status": new.value, "status_detail": detail, "history": json.dumps(history)}
    assignments.update(fields)
    tx.conn.execute(
        f"UPDATE moves SET {', '.join(f'{k}=?' for k in assignments)} WHERE id=?",
        (*assignments.values(), row["id"]),
    )


def start(
    tx: Tx, scenario: Scenario, address: str, target: str, *, hold: bool = False,
    at: float | None = None,
) -> str:
    home = directory.lookup(tx.conn, address)
    if home is None:
        raise NotFound(f"no mailbox {address!r}")
    if not scenario.has_server(target):
        raise NotFound(f"no server {target!r}")
    target = scenario.server(target).name
    if target == home.server:
        raise Invalid(f"{home.address} is already on {target}")
    active = tx.conn.execute(
        "SELECT id FROM moves WHERE mailbox=? AND status NOT IN (?,?,?)",
        (home.address, *sorted(s.value for s in FINAL)),
    ).fetchone()
    if active is not None:
        raise Conflict(f"{home.address} already has move {active[0]}")
    move_id = secrets.token_hex(4)
    start_at = tx.now if at is None else max(at, tx.now)
    history = [{"status": MoveStatus.QUEUED.value, "status_detail": "Queued", "time": tx.now}]
    tx.conn.execute(
        "INSERT INTO moves(id, mailbox, source, target, engine, status, status_detail, hold,"
        " created_at, start_at, options, history) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (move_id, home.address, home.server, target, ENGINE, MoveStatus.QUEUED.value, "Queued",
         int(hold), tx.now, start_at, json.dumps({"hold": hold, "at": at}), json.dumps(history)),
    )
    if start_at <= tx.now:
        _begin(tx, scenario, _row(tx.conn, move_id))
    return move_id


def _begin(tx: Tx, scenario: Scenario, row: sqlite3.Row) -> None:
    """Set PR_IN_TRANSIT on the source and create the target mailbox in transit."""
    mailbox, source, target = row["mailbox"], row["source"], row["target"]
    stores_mailbox.set_in_transit(tx.conn, source, mailbox, True)
    stores_mailbox.create(tx.conn, target, mailbox, in_transit=True)
    _, size = stores_mailbox.size(tx.conn, source, mailbox)
    due_at = None if row["hold"] else tx.now + duration(scenario.defaults, size)
    detail = "Held" if row["hold"] else "CopyingMessages"
    _set_status(tx, row, MoveStatus.IN_PROGRESS, detail, due_at=due_at)
    tx.event("mailflow", EVENT_STARTED, "Information", source,
             f"Move {row['id']} of {mailbox} from {source} to {target} started;"
             " PR_IN_TRANSIT set on source and target.")


def complete(tx: Tx, scenario: Scenario, move_id: str) -> None:
    row = _row(tx.conn, move_id)
    if row["status"] == MoveStatus.QUEUED.value:
        _begin(tx, scenario, row)
        row = _row(tx.conn, move_id)
    _set_status(tx, row, MoveStatus.COMPLETION_IN_PROGRESS, "Finalization")
    mailbox, source, target = row["mailbox"], row["source"], row["target"]
    stores_mailbox.transfer_items(tx.conn, mailbox, source, target)
    directory.rehome(tx.conn, scenario, mailbox, scenario.server(target))
    stores_mailbox.set_in_transit(tx.conn, target, mailbox, False)
    stores_mailbox.remove(tx.conn, source, mailbox)
    _set_status(tx, _row(tx.conn, move_id), MoveStatus.COMPLETED, "Completed",
                percent_complete=100, finished_at=tx.now, due_at=None)
    tx.note("move_duration", tx.now - row["start_at"], engine=row["engine"])
    tx.event("mailflow", EVENT_COMPLETED, "Information", target,
             f"Move {move_id} of {mailbox} to {target} completed; directory updated.")
    _release(tx, scenario, mailbox)


def _release(tx: Tx, scenario: Scenario, mailbox: str) -> None:
    """PR_IN_TRANSIT is clear: deferred mail goes back to the categorizer, InTransitFolder
    mail to the MTA."""
    categorizer.release(tx, scenario, mailbox)
    mta.release_holding(tx, scenario, mailbox)


def fail(tx: Tx, scenario: Scenario, move_id: str, reason: str = "Failed by the operator") -> None:
    """Roll back: the mailbox stays at the source, its flag cleared, its parked mail released."""
    row = _row(tx.conn, move_id)
    began = row["status"] != MoveStatus.QUEUED.value
    _set_status(tx, row, MoveStatus.FAILED, "FailedOther", finished_at=tx.now, due_at=None)
    mailbox, source, target = row["mailbox"], row["source"], row["target"]
    if began:
        stores_mailbox.remove(tx.conn, target, mailbox)
        stores_mailbox.set_in_transit(tx.conn, source, mailbox, False)
    tx.event("mailflow", EVENT_FAILED, "Error", source,
             f"Move {move_id} of {mailbox} failed and was rolled back: {reason}.")
    _release(tx, scenario, mailbox)


def run_due(tx: Tx, scenario: Scenario) -> int:
    """Begin moves whose schedule arrived and complete moves whose copy is done."""
    count = 0
    for row in tx.conn.execute(
        "SELECT * FROM moves WHERE status=? AND start_at<=?", (MoveStatus.QUEUED.value, tx.now)
    ).fetchall():
        _begin(tx, scenario, row)
        count += 1
    for row in tx.conn.execute(
        "SELECT id FROM moves WHERE status=? AND due_at<=?", (MoveStatus.IN_PROGRESS.value, tx.now)
    ).fetchall():
        complete(tx, scenario, row[0])
        count += 1
    return count


def next_due(conn: sqlite3.Connection) -> float | None:
    row = conn.execute(
        "SELECT MIN(t) FROM (SELECT start_at AS t FROM moves WHERE status=?"
        " UNION ALL SELECT due_at FROM moves WHERE status=? AND due_at IS NOT NULL)",
        (MoveStatus.QUEUED.value, MoveStatus.IN_PROGRESS.value),
    ).fetchone()
    return None if row[0] is None else float(row[0])


def describe(row: sqlite3.Row, now: float) -> dict[str, Any]:
    percent = row["percent_complete"]
    if row["status"] == MoveStatus.IN_PROGRESS.value and row["due_at"]:
        span = row["due_at"] - row["start_at"]
        percent = min(99, int(100 * (now - row["start_at"]) / span)) if span > 0 else 99
    return {
        "id": row["id"],
        "mailbox": row["mailbox"],
        "source": row["source"],
        "target": row["target"],
        "engine": row["engine"],
        "status": row["status"],
        "status_detail": row["status_detail"],
        "hold": bool(row["hold"]),
        "percent_complete": percent,
        "bad_items_encountered": 0,
        "bad_item_limit": 0,
        "created_at": row["created_at"],
        "start_at": row["start_at"],
        "due_at": row["due_at"],
        "finished_at": row["finished_at"],
        "history": json.loads(row["history"]),
    }
