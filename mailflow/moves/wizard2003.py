"""The Exchange 2003 Move Mailbox wizard (seed 000), and the offline 2007 Move-Mailbox.

In: a wizard move's row, from ``run_due`` (the clock), ``complete`` and ``fail``.
Out: the move walked through the wizard's steps, one explicit state machine:
wait for the schedule, open MAPI to source and target, set PR_IN_TRANSIT on the
source, create the target in transit, copy (the mailbox locked throughout),
update the directory, then clean up: clear the target's flag, release the
parked mail, delete the source. A failure at any step before clean-up rolls
back. ``hold`` pauses after the copy. Exchange 2007's Move-Mailbox was offline
in the same way (KB 2591933), so it runs these steps too, as engine
``movemailbox2007``.
"""

from __future__ import annotations

import enum
import sqlite3
from typing import Any

from mailflow.moves import common
from mailflow.moves.states import MoveStatus
from stores.db import Tx
from stores.topology import Scenario


class Step(enum.StrEnum):
    WAIT_FOR_SCHEDULE = "WaitingForSchedule"
    OPEN_MAPI = "OpenMapi"
    SET_SOURCE_IN_TRANSIT = "SetSourceInTransit"
    CREATE_TARGET = "CreateTarget"
    COPY = "CopyingMessages"
    HELD = "Held"
    UPDATE_DIRECTORY = "UpdatingDirectory"
    CLEAN_UP = "Cleanup"
    DONE = "Completed"
    ROLLED_BACK = "RolledBack"


TRANSITIONS: dict[Step, frozenset[Step]] = {
    Step.WAIT_FOR_SCHEDULE: frozenset({Step.OPEN_MAPI, Step.ROLLED_BACK}),
    Step.OPEN_MAPI: frozenset({Step.SET_SOURCE_IN_TRANSIT, Step.ROLLED_BACK}),
    Step.SET_SOURCE_IN_TRANSIT: frozenset({Step.CREATE_TARGET, Step.ROLLED_BACK}),
    Step.CREATE_TARGET: frozenset({Step.COPY, Step.ROLLED_BACK}),
    Step.COPY: frozenset({Step.HELD, Step.UPDATE_DIRECTORY, Step.ROLLED_BACK}),
    Step.HELD: frozenset({Step.UPDATE_DIRECTORY, Step.ROLLED_BACK}),
    Step.UPDATE_DIRECTORY: frozenset({Step.CLEAN_UP, Step.ROLLED_BACK}),
    Step.CLEAN_UP: frozenset({Step.DONE}),
    Step.DONE: frozenset(),
    Step.ROLLED_BACK: frozenset(),
}

# Where ``--fail-at`` can inject a failure.
FAIL_POINTS = ("open-mapi", "create-target", "copy", "directory-update")


class InvalidStep(RuntimeError):
    def __init__(self, move: str, current: Step, new: Step) -> None:
        super().__init__(f"move {move}: invalid wizard step {current.value} -> {new.value}")


def _status(step: Step) -> MoveStatus:
    if step is Step.WAIT_FOR_SCHEDULE:
        return MoveStatus.QUEUED
    if step in (Step.UPDATE_DIRECTORY, Step.CLEAN_UP):
        return MoveStatus.COMPLETION_IN_PROGRESS
    return MoveStatus.IN_PROGRESS


def _check(move: sqlite3.Row, step: Step) -> None:
    current = Step(move["step"])
    if step not in TRANSITIONS[current]:
        raise InvalidStep(move["id"], current, step)


def _to(tx: Tx, move: sqlite3.Row, step: Step, **fields: Any) -> sqlite3.Row:
    _check(move, step)
    moved = common.set_status(tx, move, _status(step), step.value, step=step.value, **fields)
    common.event(tx, moved, common.EVENT_STEP, "Information", f"step {step.value}.")
    return moved


class _StepFailed(Exception):
    def __init__(self, reason: str, detail: str = "FailedOther") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def _injected(move: sqlite3.Row, point: str, detail: str = "FailedOther") -> None:
    if common.options(move).fail_at == point:
        raise _StepFailed(f"failure injected at {point}", detail)


def _fail(tx: Tx, scenario: Scenario, move: sqlite3.Row, reason: str, detail: str) -> None:
    _check(move, Step.ROLLED_BACK)
    common.roll_back(tx, scenario, move, detail, reason)
    tx.conn.execute("UPDATE moves SET step=? WHERE id=?", (Step.ROLLED_BACK.value, move["id"]))


def start_steps(tx: Tx, scenario: Scenario, move: sqlite3.Row) -> None:
    """Steps 2 to 5: open MAPI, lock the source, create the target, start the copy."""
    try:
        move = _to(tx, move, Step.OPEN_MAPI, begun_at=tx.now)
        _injected(move, "open-mapi", "FailedMAPI")
        host = common.options(move).move_host or move["target"]
        for server in (move["source"], move["target"]):
            if host != server and _rpc_blocked(tx.conn, host, server):
                raise _StepFailed(f"MAPI logon from {host} to {server} failed: RPC is blocked",
                                  "FailedMAPI")
        move = _to(tx, move, Step.SET_SOURCE_IN_TRANSIT)
        common.lock_source(tx, move)
        move = _to(tx, move, Step.CREATE_TARGET)
        _injected(move, "create-target")
        common.create_target(tx, move)
        items, size = common.mailbox_size(tx, move)
        move = _to(tx, move, Step.COPY, due_at=tx.now + common.duration(scenario.defaults, size))
        tx.conn.execute(
            "UPDATE moves SET progress=json_set(progress, '$.total_mailbox_size', ?,"
            " '$.items_total', ?) WHERE id=?", (size, items, move["id"]))
        common.event(tx, move, common.EVENT_STARTED, "Information",
                     "PR_IN_TRANSIT set on source and target; copying.")
    except _StepFailed as failure:
        _fail(tx, scenario, common.row(tx.conn, move["id"]), failure.reason, failure.detail)


def _rpc_blocked(conn: sqlite3.Connection, a: str, b: str) -> bool:
    first, second = sorted((a, b))
    found = conn.execute(
        "SELECT allowed FROM rpc WHERE server_a=? AND server_b=?", (first, second)
    ).fetchone()
    return found is not None and not found[0]


def copy_done(tx: Tx, scenario: Scenario, move: sqlite3.Row, *, hold: bool = True) -> None:
    """Step 5 ends: over the bad-item limit the move rolls back; else hold or go on."""
    request = common.options(move)
    limit = (request.bad_item_limit if request.bad_item_limit is not None
             else scenario.defaults.wizard_bad_item_limit)
    tx.conn.execute("UPDATE moves SET progress=json_set(progress, '$.bad_items_encountered', ?)"
                    " WHERE id=?", (request.bad_items, move["id"]))
    move = common.row(tx.conn, move["id"])
    if request.bad_items > limit:
        _fail(tx, scenario, move, f"{request.bad_items} bad items exceed the limit of {limit}",
              "FailedBadItemLimit")
        return
    if request.fail_at == "copy":
        _fail(tx, scenario, move, "failure injected at copy", "FailedOther")
        return
    if request.hold and hold:
        _to(tx, move, Step.HELD, due_at=None)
        return
    finish(tx, scenario, move)


def finish(tx: Tx, scenario: Scenario, move: sqlite3.Row) -> None:
    """Steps 6 and 7: update the directory (a failure rolls back), then clean up."""
    move = _to(tx, move, Step.UPDATE_DIRECTORY, due_at=None)
    if common.options(move).fail_at == "directory-update":
        _fail(tx, scenario, move, "failure injected at directory-update", "FailedOther")
        return
    move = _to(tx, move, Step.CLEAN_UP)
    _check(move, Step.DONE)
    move = common.finish(tx, scenario, move, MoveStatus.COMPLETED)
    tx.conn.execute("UPDATE moves SET step=? WHERE id=?", (Step.DONE.value, move["id"]))


def complete(tx: Tx, scenario: Scenario, move: sqlite3.Row) -> None:
    """``complete`` on a wizard move: run whatever steps are left, now."""
    step = Step(move["step"])
    if step is Step.WAIT_FOR_SCHEDULE:
        start_steps(tx, scenario, move)
        move = common.row(tx.conn, move["id"])
        step = Step(move["step"])
    if step is Step.COPY:
        copy_done(tx, scenario, move, hold=False)
    elif step is Step.HELD:
        finish(tx, scenario, move)


def fail(tx: Tx, scenario: Scenario, move: sqlite3.Row, reason: str) -> None:
    _fail(tx, scenario, move, reason, "FailedOther")


def run_due(tx: Tx, scenario: Scenario) -> int:
    """Start wizard moves whose schedule came (as batch threads allow) and end due copies."""
    done = 0
    threads = scenario.defaults.wizard_threads
    for move in tx.conn.execute(
        "SELECT * FROM moves WHERE engine IN ('wizard2003', 'movemailbox2007') AND step=?"
        " AND start_at<=? ORDER BY created_at, id", (Step.WAIT_FOR_SCHEDULE.value, tx.now)
    ).fetchall():
        if move["batch"] is not None and _running_in_batch(tx.conn, move["batch"]) >= threads:
            continue
        start_steps(tx, scenario, move)
        done += 1
    for move in tx.conn.execute(
        "SELECT * FROM moves WHERE engine IN ('wizard2003', 'movemailbox2007') AND step=?"
        " AND due_at<=?", (Step.COPY.value, tx.now)
    ).fetchall():
        copy_done(tx, scenario, move)
        done += 1
    return done


def _running_in_batch(conn: sqlite3.Connection, batch: str) -> int:
    """Moves of a batch holding one of its threads: between opening MAPI and the copy's end."""
    return int(conn.execute(
        "SELECT COUNT(*) FROM moves WHERE batch=? AND step IN (?,?,?,?)",
        (batch, Step.OPEN_MAPI.value, Step.SET_SOURCE_IN_TRANSIT.value, Step.CREATE_TARGET.value,
         Step.COPY.value),
    ).fetchone()[0])


def recover(tx: Tx, scenario: Scenario) -> int:
    """After a crash the wizard process is gone: a move caught mid-copy rolls back."""
    caught = tx.conn.execute(
        "SELECT * FROM moves WHERE engine IN ('wizard2003', 'movemailbox2007')"
        " AND step IN (?,?,?,?)",
        (Step.OPEN_MAPI.value, Step.SET_SOURCE_IN_TRANSIT.value, Step.CREATE_TARGET.value,
         Step.COPY.value),
    ).fetchall()
    for move in caught:
        _fail(tx, scenario, move, "the Move Mailbox process ended (lab restart)", "FailedOther")
    return len(caught)
