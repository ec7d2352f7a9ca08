"""Mailbox moves at rest: the ``moves`` table and the store work a move does.

In: a new ``MoveRecord`` (a request), status/step/progress updates from the move
engines, and the engines' questions (which moves are due, how many run per
database or batch). Out: ``MoveRecord`` values read back; PR_IN_TRANSIT set and
cleared on the source and target stores, the target created or dropped, the
items carried over, the directory rehomed and MailboxMoveHistory appended.
Nothing here decides what a move does next: that is ``mailflow.moves``.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stores import directory
from stores import mailbox as stores_mailbox
from stores.backend import Conn, Read, Tx
from stores.sql import marks
from stores.topology import Scenario


class MoveStatus(enum.StrEnum):
    """RequestStatus of an Exchange 2010 move request; every engine reports in these."""

    QUEUED = "Queued"
    IN_PROGRESS = "InProgress"
    AUTO_SUSPENDED = "AutoSuspended"
    SUSPENDED = "Suspended"
    COMPLETION_IN_PROGRESS = "CompletionInProgress"
    COMPLETED = "Completed"
    COMPLETED_WITH_WARNING = "CompletedWithWarning"
    FAILED = "Failed"


FINAL = frozenset({MoveStatus.COMPLETED, MoveStatus.COMPLETED_WITH_WARNING, MoveStatus.FAILED})
# Columns an engine may update; the JSON ones are written from Python values.
_COLUMNS = frozenset({"status", "status_detail", "step", "due_at", "begun_at", "finished_at",
                      "progress", "history"})
_JSON = frozenset({"progress", "history", "options"})


@dataclass(frozen=True)
class MoveRecord:
    """One row of ``moves``, its JSON columns decoded."""

    id: str
    mailbox: str
    source: str
    target: str
    engine: str
    status: MoveStatus
    status_detail: str
    step: str
    hold: bool
    created_at: float
    start_at: float
    options: Mapping[str, Any]
    history: tuple[Mapping[str, Any], ...]
    batch: str | None = None
    due_at: float | None = None
    begun_at: float | None = None
    finished_at: float | None = None
    progress: Mapping[str, Any] = field(default_factory=dict)


def _record(row: Any) -> MoveRecord:
    return MoveRecord(
        id=row["id"], mailbox=row["mailbox"], source=row["source"], target=row["target"],
        engine=row["engine"], status=MoveStatus(row["status"]),
        status_detail=row["status_detail"], step=row["step"], hold=bool(row["hold"]),
        created_at=row["created_at"], start_at=row["start_at"],
        options=json.loads(row["options"]), history=tuple(json.loads(row["history"])),
        batch=row["batch"], due_at=row["due_at"], begun_at=row["begun_at"],
        finished_at=row["finished_at"], progress=json.loads(row["progress"]),
    )


def _records(rows: Iterable[Any]) -> list[MoveRecord]:
    return [_record(r) for r in rows]


def get(conn: Read, move_id: str) -> MoveRecord | None:
    row = conn.execute("SELECT * FROM moves WHERE id=?", (move_id,)).fetchone()
    return None if row is None else _record(row)


def page(conn: Read, limit: int, offset: int) -> list[MoveRecord]:
    return _records(conn.execute(
        "SELECT * FROM moves ORDER BY created_at, id LIMIT ? OFFSET ?", (limit, offset)))


def insert(tx: Tx, move: MoveRecord) -> None:
    tx.execute(
        "INSERT INTO moves(id, mailbox, source, target, engine, status, status_detail, hold,"
        " created_at, start_at, options, history, batch, step)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (move.id, move.mailbox, move.source, move.target, move.engine, move.status.value,
         move.status_detail, int(move.hold), move.created_at, move.start_at,
         json.dumps(move.options), json.dumps(list(move.history)), move.batch, move.step),
    )


def update(tx: Tx, move_id: str, values: Mapping[str, Any]) -> None:
    """Set the named columns (of ``_COLUMNS``); progress and history are Python values."""
    unknown = set(values) - _COLUMNS
    if unknown:
        raise ValueError(f"moves has no updatable column {sorted(unknown)}")
    encoded = [json.dumps(v) if k in _JSON else v for k, v in values.items()]
    tx.execute(f"UPDATE moves SET {', '.join(f'{k}=?' for k in values)} WHERE id=?",
                    (*encoded, move_id))


def delete(tx: Tx, move_id: str) -> None:
    tx.execute("DELETE FROM moves WHERE id=?", (move_id,))


def blocking(tx: Tx, mailbox: str, engine: str) -> MoveRecord | None:
    """A move of ``mailbox`` still open, or any of ``engine`` (MRS requests stay until removed)."""
    row = tx.execute(
        "SELECT * FROM moves WHERE mailbox=? AND (status NOT IN (?,?,?) OR engine=?)",
        (mailbox, *sorted(s.value for s in FINAL), engine),
    ).fetchone()
    return None if row is None else _record(row)


def queued_due(tx: Tx, engine: str) -> list[MoveRecord]:
    """Queued requests of ``engine`` whose start time came, oldest first."""
    return _records(tx.execute(
        "SELECT * FROM moves WHERE engine=? AND status=? AND start_at<=? ORDER BY created_at, id",
        (engine, MoveStatus.QUEUED.value, tx.now)).fetchall())


def phase_due(tx: Tx, engine: str, statuses: Iterable[MoveStatus]) -> list[MoveRecord]:
    """Requests of ``engine`` in one of ``statuses`` whose current phase is due."""
    wanted = [s.value for s in statuses]
    return _records(tx.execute(
        f"SELECT * FROM moves WHERE engine=? AND status IN ({marks(wanted)})"
        " AND due_at<=?", (engine, *wanted, tx.now)).fetchall())


def count_active(tx: Tx, engine: str, column: str, server: str,
                 statuses: Iterable[MoveStatus]) -> int:
    """Requests of ``engine`` in ``statuses`` whose ``column`` (source or target) is ``server``."""
    if column not in ("source", "target"):
        raise ValueError(column)
    wanted = [s.value for s in statuses]
    return int(tx.execute(
        f"SELECT COUNT(*) FROM moves WHERE engine=? AND {column}=?"
        f" AND status IN ({marks(wanted)})", (engine, server, *wanted),
    ).fetchone()[0])


def open_request(conn: Read, mailbox: str, engine: str) -> MoveRecord | None:
    """The request of ``engine`` for ``mailbox`` not yet removed (at most one: the next is
    refused until it is), else None."""
    row = conn.execute("SELECT * FROM moves WHERE mailbox=? AND engine=?"
                       " ORDER BY created_at DESC LIMIT 1", (mailbox, engine)).fetchone()
    return None if row is None else _record(row)


def requests_to(conn: Read, target: str, engine: str) -> list[MoveRecord]:
    """Requests of ``engine`` whose target is ``target``, oldest first."""
    return _records(conn.execute("SELECT * FROM moves WHERE target=? AND engine=?"
                                 " ORDER BY created_at, id", (target, engine)).fetchall())


def count_active_on_mrs(tx: Tx, engine: str, mrs_server: str,
                        statuses: Iterable[MoveStatus]) -> int:
    """Requests of ``engine`` in ``statuses`` that the MRS instance ``mrs_server`` runs."""
    wanted = [s.value for s in statuses]
    rows = tx.execute(f"SELECT options FROM moves WHERE engine=? AND status IN ({marks(wanted)})",
                      (engine, *wanted)).fetchall()
    return sum(json.loads(r[0]).get("mrs_server") == mrs_server for r in rows)


def queue_position(conn: Read, move: MoveRecord) -> tuple[int, int]:
    """(position, length) of a Queued request among the Queued requests of its engine to the
    same target, oldest first (PositionInQueue)."""
    rows = conn.execute(
        "SELECT id FROM moves WHERE engine=? AND target=? AND status=? ORDER BY created_at, id",
        (move.engine, move.target, MoveStatus.QUEUED.value)).fetchall()
    ids = [r[0] for r in rows]
    return (ids.index(move.id) + 1 if move.id in ids else 0), len(ids)


def at_step(tx: Tx, engines: Iterable[str], step: str, *, started: bool = False,
            due: bool = False) -> list[MoveRecord]:
    """Moves of ``engines`` at ``step``; with ``started`` those whose start time came (oldest
    first), with ``due`` those whose step is due."""
    names = list(engines)
    sql = (f"SELECT * FROM moves WHERE engine IN ({marks(names)}) AND step=?")
    if started:
        sql += " AND start_at<=? ORDER BY created_at, id"
    elif due:
        sql += " AND due_at<=?"
    args = (*names, step, *((tx.now,) if started or due else ()))
    return _records(tx.execute(sql, args).fetchall())


def at_steps(tx: Tx, engines: Iterable[str], steps: Iterable[str]) -> list[MoveRecord]:
    names, wanted = list(engines), list(steps)
    return _records(tx.execute(
        f"SELECT * FROM moves WHERE engine IN ({marks(names)})"
        f" AND step IN ({marks(wanted)})", (*names, *wanted)).fetchall())


def count_in_batch(tx: Tx, batch: str, steps: Iterable[str]) -> int:
    wanted = list(steps)
    return int(tx.execute(
        f"SELECT COUNT(*) FROM moves WHERE batch=? AND step IN ({marks(wanted)})",
        (batch, *wanted)).fetchone()[0])


def lock_source(tx: Tx, move: MoveRecord) -> None:
    stores_mailbox.set_in_transit(tx, move.source, move.mailbox, True)


def create_target(tx: Tx, move: MoveRecord, *, in_transit: bool = True) -> None:
    stores_mailbox.create(tx, move.target, move.mailbox, in_transit=in_transit)


def mailbox_size(tx: Tx, move: MoveRecord) -> tuple[int, int]:
    """(item count, bytes) of the mailbox in the source store."""
    return stores_mailbox.size(tx, move.source, move.mailbox)


def rehome(tx: Tx, scenario: Scenario, move: MoveRecord) -> int:
    """Copy done: items to the target, directory updated, target flag cleared, source gone.
    Returns the number of items carried."""
    items = stores_mailbox.transfer_items(tx, move.mailbox, move.source, move.target)
    directory.rehome(tx, scenario, move.mailbox, scenario.server(move.target))
    stores_mailbox.set_in_transit(tx, move.target, move.mailbox, False)
    stores_mailbox.remove(tx, move.source, move.mailbox)
    return items


def unlock(tx: Tx, move: MoveRecord) -> None:
    """Roll back: drop the target copy if it was made and clear the source's flag."""
    if stores_mailbox.in_transit(tx, move.target, move.mailbox) is not None:
        stores_mailbox.remove(tx, move.target, move.mailbox)
    stores_mailbox.set_in_transit(tx, move.source, move.mailbox, False)


def append_move_history(tx: Tx, mailbox: str, entry: Mapping[str, Any]) -> None:
    """MailboxMoveHistory: a completed request, kept in the mailbox's attributes."""
    found = tx.execute(
        "SELECT attributes FROM mailboxes WHERE address=?", (mailbox,)).fetchone()
    attributes = json.loads(found[0])
    attributes.setdefault("MailboxMoveHistory", []).append(dict(entry))
    tx.execute("UPDATE mailboxes SET attributes=? WHERE address=?",
                    (json.dumps(attributes), mailbox))


def next_due(conn: Conn, after: float) -> float | None:
    """The first time after ``after`` at which a move falls due or a queued move starts."""
    row = conn.execute(
        "SELECT MIN(t) FROM (SELECT MIN(due_at) AS t FROM moves WHERE due_at > :after"
        " UNION ALL SELECT MIN(start_at) FROM moves WHERE status = 'Queued' AND start_at > :after"
        ") AS due", {"after": after},
    ).fetchone()
    return None if row[0] is None else float(row[0])
