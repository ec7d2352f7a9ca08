"""What every move engine shares: the request, its row, locking, finishing and rolling back.

In: a validated ``MoveRequest`` and the engines' decisions. Out: the move's
row (status, status_detail, step, progress, history), PR_IN_TRANSIT on the
source and target stores, the directory update of a finished move, and the
release of every pair parked for the mailbox to the categorizer and the MTA.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from mailflow.errors import Invalid, NotFound
from mailflow.moves.states import MoveStatus, transition
from routing import categorizer, mta
from stores import directory
from stores import mailbox as stores_mailbox
from stores.db import Tx
from stores.topology import Defaults, Scenario

ENGINES = ("wizard2003", "movemailbox2007", "mrs2010")
# mailflow's own event ids for move milestones; Exchange logged these differently per version.
EVENT_STARTED, EVENT_COMPLETED, EVENT_FAILED, EVENT_STEP = 1001, 1002, 1003, 1004


@dataclass(frozen=True)
class MoveRequest:
    """A move as asked for (CLI flags, API body)."""

    hold: bool = False
    at: float | None = None
    engine: str | None = None
    online: bool = True
    bad_items: int = 0
    bad_item_limit: int | None = None
    suspend_when_ready: bool = False
    fail_at: str | None = None
    batch: str | None = None
    move_host: str | None = None



def pick_engine(source_version: str, target_version: str) -> str:
    """The tool that version pair was moved with: MRS to or from 2010, Move-Mailbox with 2007."""
    versions = {source_version, target_version}
    if "2010" in versions:
        return "mrs2010"
    if "2007" in versions:
        return "movemailbox2007"
    return "wizard2003"


def duration(defaults: Defaults, mailbox_bytes: int) -> float:
    """Simulated seconds the copy of a mailbox takes: a fixed start-up plus the bytes."""
    return defaults.move_base_seconds + mailbox_bytes / defaults.move_bytes_per_second


def row(conn: sqlite3.Connection, move_id: str) -> sqlite3.Row:
    found: sqlite3.Row | None = conn.execute(
        "SELECT * FROM moves WHERE id=?", (move_id,)
    ).fetchone()
    if found is None:
        raise NotFound(f"no move {move_id!r}")
    return found


def options(move: sqlite3.Row) -> MoveRequest:
    return MoveRequest(**json.loads(move["options"]))


def progress(move: sqlite3.Row) -> dict[str, Any]:
    return dict(json.loads(move["progress"]))


def set_status(
    tx: Tx, move: sqlite3.Row, status: MoveStatus, detail: str, *, step: str | None = None,
    progress_update: dict[str, Any] | None = None, **fields: Any,
) -> sqlite3.Row:
    """Move the request to ``status``/``detail``, recorded in its history; returns the new row."""
    current = MoveStatus(move["status"])
    if status != current:
        transition(move["id"], current, status)
    history = json.loads(move["history"])
    if (status.value, detail) != (move["status"], move["status_detail"]):
        history.append({"status": status.value, "status_detail": detail, "time": tx.now})
    values = {"status": status.value, "status_detail": detail, "history": json.dumps(history),
              **fields}
    if step is not None:
        values["step"] = step
    if progress_update:
        values["progress"] = json.dumps({**progress(move), **progress_update})
    tx.conn.execute(
        f"UPDATE moves SET {', '.join(f'{k}=?' for k in values)} WHERE id=?",
        (*values.values(), move["id"]),
    )
    return row(tx.conn, move["id"])


def event(tx: Tx, move: sqlite3.Row, event_id: int, level: str, text: str) -> None:
    tx.event("mailflow", event_id, level, move["source"],
             f"Move {move['id']} ({move['engine']}) of {move['mailbox']}: {text}")


def lock_source(tx: Tx, move: sqlite3.Row) -> None:
    stores_mailbox.set_in_transit(tx.conn, move["source"], move["mailbox"], True)


def create_target(tx: Tx, move: sqlite3.Row, *, in_transit: bool = True) -> None:
    stores_mailbox.create(tx.conn, move["target"], move["mailbox"], in_transit=in_transit)


def mailbox_size(tx: Tx, move: sqlite3.Row) -> tuple[int, int]:
    return stores_mailbox.size(tx.conn, move["source"], move["mailbox"])


def finish(tx: Tx, scenario: Scenario, move: sqlite3.Row, status: MoveStatus) -> sqlite3.Row:
    """Copy done, directory updated: clear the flag on the target, remove the source, release."""
    mailbox, source, target = move["mailbox"], move["source"], move["target"]
    items = stores_mailbox.transfer_items(tx.conn, mailbox, source, target)
    directory.rehome(tx.conn, scenario, mailbox, scenario.server(target))
    stores_mailbox.set_in_transit(tx.conn, target, mailbox, False)
    stores_mailbox.remove(tx.conn, source, mailbox)
    begun = move["begun_at"] if move["begun_at"] is not None else move["start_at"]
    tx.note("move_duration", tx.now - begun, engine=move["engine"])
    size = progress(move).get("total_mailbox_size", 0)
    done = set_status(tx, move, status, "Completed", finished_at=tx.now,
                      due_at=None, progress_update={"items_transferred": items,
                                                    "bytes_transferred": size})
    event(tx, done, EVENT_COMPLETED, "Information",
          f"completed; mailbox now on {target}, directory updated.")
    release(tx, scenario, mailbox)
    return done


def roll_back(
    tx: Tx, scenario: Scenario, move: sqlite3.Row, detail: str, reason: str
) -> sqlite3.Row:
    """The move failed: the mailbox stays on the source, its flag cleared, its mail released."""
    mailbox, source, target = move["mailbox"], move["source"], move["target"]
    if stores_mailbox.in_transit(tx.conn, target, mailbox) is not None:
        stores_mailbox.remove(tx.conn, target, mailbox)
    stores_mailbox.set_in_transit(tx.conn, source, mailbox, False)
    failed = set_status(tx, move, MoveStatus.FAILED, detail, finished_at=tx.now, due_at=None,
                        progress_update={"failure_step": move["step"], "failure_reason": reason})
    event(tx, failed, EVENT_FAILED, "Error", f"failed at {move['step'] or 'start'} and was"
          f" rolled back: {reason}.")
    release(tx, scenario, mailbox)
    return failed


def release(tx: Tx, scenario: Scenario, mailbox: str) -> None:
    """PR_IN_TRANSIT is clear: deferred mail goes back to the categorizer, InTransitFolder
    mail to the MTA."""
    categorizer.release(tx, scenario, mailbox)
    mta.release_holding(tx, scenario, mailbox)


def check_fail_at(request: MoveRequest, steps: tuple[str, ...]) -> None:
    if request.fail_at is not None and request.fail_at not in steps:
        raise Invalid(f"fail_at must be one of {', '.join(steps)}")


# PercentComplete as each step spans it: (where the step starts, where it ends).
PERCENT_SPANS = {
    "CopyingMessages": (0, 90), "Held": (90, 90), "UpdatingDirectory": (95, 95),
    "Cleanup": (99, 99), "InitialSeeding": (0, 10), "IncrementalSync": (90, 95),
    "AutoSuspended": (95, 95), "Finalization": (95, 99),
}


def percent_complete(move: sqlite3.Row, now: float) -> int:
    """Grows with the steps and, within a timed step, with the clock; never goes back."""
    if move["status"] in (MoveStatus.COMPLETED.value, MoveStatus.COMPLETED_WITH_WARNING.value):
        return 100
    if move["step"] == "CopyingMessages" and move["engine"] == "mrs2010":
        low, high = 10, 90
    else:
        low, high = PERCENT_SPANS.get(move["step"], (0, 0))
    history = json.loads(move["history"])
    since = history[-1]["time"] if history else now
    if move["due_at"] and move["due_at"] > since and high > low:
        share = min(1.0, max(0.0, (now - since) / (move["due_at"] - since)))
        return int(low + (high - low) * share)
    return low


def describe(move: sqlite3.Row, now: float) -> dict[str, Any]:
    request, done = options(move), progress(move)
    percent = percent_complete(move, now)
    return {
        "id": move["id"],
        "mailbox": move["mailbox"],
        "source": move["source"],
        "target": move["target"],
        "engine": move["engine"],
        "batch": move["batch"],
        "status": move["status"],
        "status_detail": move["status_detail"],
        "step": move["step"],
        "hold": request.hold,
        "online": request.online,
        "suspend_when_ready": request.suspend_when_ready,
        "percent_complete": percent,
        "bytes_transferred": done.get("bytes_transferred", 0),
        "items_transferred": done.get("items_transferred", 0),
        "total_mailbox_size": done.get("total_mailbox_size", 0),
        "bad_item_limit": request.bad_item_limit,
        "bad_items_encountered": done.get("bad_items_encountered", 0),
        "failure_step": done.get("failure_step"),
        "failure_reason": done.get("failure_reason"),
        "created_at": move["created_at"],
        "start_at": move["start_at"],
        "due_at": move["due_at"],
        "finished_at": move["finished_at"],
        "history": json.loads(move["history"]),
    }
