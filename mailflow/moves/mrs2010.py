"""Exchange 2010 move requests, run by the Mailbox Replication Service (seed 001).

In: MRS move rows, from ``run_due`` (the clock) and suspend, resume, complete
and fail. Out: requests walked through RequestStatus and StatusDetail:
Queued, then InProgress (InitialSeeding, CopyingMessages, IncrementalSync),
AutoSuspended when asked to wait, CompletionInProgress (Finalization) and
Completed. An online move locks the mailbox (PR_IN_TRANSIT) only for the final
sync and directory update; ``online: false`` locks it from the start. Transient
faults retry every RetryDelay up to MaxRetries; bad items over BadItemLimit
fail the request; the per-database limits keep extra requests Queued.
"""

from __future__ import annotations

import json
import sqlite3

from mailflow.errors import Invalid
from mailflow.moves import common
from mailflow.moves.states import MoveStatus
from stores.db import Tx
from stores.topology import Defaults, Scenario

ENGINE = "mrs2010"
SEEDING, COPYING, INCREMENTAL = "InitialSeeding", "CopyingMessages", "IncrementalSync"
AUTO_SUSPENDED, FINALIZATION = "AutoSuspended", "Finalization"
# Requests holding MRS capacity on their source and target databases.
ACTIVE = (MoveStatus.IN_PROGRESS.value, MoveStatus.COMPLETION_IN_PROGRESS.value)


def transient_failures(fail_at: str | None) -> int:
    """How many transient faults ``--fail-at transient:N`` injects."""
    if fail_at is None or not fail_at.startswith("transient:"):
        return 0
    count = fail_at.removeprefix("transient:")
    if not count.isdigit():
        raise Invalid("fail_at transient:N wants a whole number N")
    return int(count)


def phase_seconds(defaults: Defaults, phase: str, mailbox_bytes: int) -> float:
    """Simulated length of one phase: the copy takes the bytes, the others half the base."""
    if phase == COPYING:
        return mailbox_bytes / defaults.move_bytes_per_second
    return defaults.move_base_seconds / 2


def _enter(tx: Tx, scenario: Scenario, move: sqlite3.Row, phase: str) -> sqlite3.Row:
    size = common.progress(move).get("total_mailbox_size", 0)
    status = MoveStatus.COMPLETION_IN_PROGRESS if phase == FINALIZATION else MoveStatus.IN_PROGRESS
    moved = common.set_status(tx, move, status, phase, step=phase,
                              due_at=tx.now + phase_seconds(scenario.defaults, phase, size))
    common.event(tx, moved, common.EVENT_STEP, "Information", f"{status.value}/{phase}.")
    return moved


def _has_capacity(conn: sqlite3.Connection, defaults: Defaults, move: sqlite3.Row) -> bool:
    def active(column: str) -> int:
        return int(conn.execute(
            f"SELECT COUNT(*) FROM moves WHERE engine=? AND {column}=? AND status IN (?,?)",
            (ENGINE, move[column], *ACTIVE),
        ).fetchone()[0])

    return (active("source") < defaults.mrs_max_active_moves_per_source_mdb
            and active("target") < defaults.mrs_max_active_moves_per_target_mdb)


def _begin(tx: Tx, scenario: Scenario, move: sqlite3.Row) -> None:
    items, size = common.mailbox_size(tx, move)
    common.create_target(tx, move)
    if not common.options(move).online:
        common.lock_source(tx, move)
    tx.conn.execute(
        "UPDATE moves SET begun_at=?, progress=json_set(progress, '$.total_mailbox_size', ?,"
        " '$.items_total', ?) WHERE id=?", (tx.now, size, items, move["id"]))
    move = _enter(tx, scenario, common.row(tx.conn, move["id"]), SEEDING)
    common.event(tx, move, common.EVENT_STARTED, "Information", "move request started.")


def _after_copy(tx: Tx, scenario: Scenario, move: sqlite3.Row) -> None:
    request, done = common.options(move), common.progress(move)
    failures = done.get("transient_failures", 0)
    if failures < transient_failures(request.fail_at):
        failures += 1
        if failures > scenario.defaults.mrs_max_retries:
            common.roll_back(tx, scenario, move, "FailedOther",
                             f"transient failures exceeded MaxRetries"
                             f" ({scenario.defaults.mrs_max_retries})")
            return
        common.set_status(tx, move, MoveStatus.IN_PROGRESS, "TransientFailure",
                          due_at=tx.now + scenario.defaults.mrs_retry_delay_seconds,
                          progress_update={"transient_failures": failures})
        return
    limit = _bad_item_limit(scenario, move)
    moved = common.set_status(tx, move, MoveStatus.IN_PROGRESS, COPYING, progress_update={
        "bad_items_encountered": request.bad_items,
        "bytes_transferred": done.get("total_mailbox_size", 0),
        "items_transferred": done.get("items_total", 0),
    })
    if request.bad_items > limit:
        common.roll_back(tx, scenario, moved, "FailedBadItemLimit",
                         f"{request.bad_items} bad items exceed BadItemLimit {limit}")
        return
    _enter(tx, scenario, moved, INCREMENTAL)


def _bad_item_limit(scenario: Scenario, move: sqlite3.Row) -> int:
    limit = common.options(move).bad_item_limit
    return scenario.defaults.mrs_bad_item_limit if limit is None else limit


def _finalize(tx: Tx, scenario: Scenario, move: sqlite3.Row) -> None:
    """Final sync and directory update: the only time an online move locks the mailbox."""
    common.lock_source(tx, move)
    _enter(tx, scenario, move, FINALIZATION)


def _complete(tx: Tx, scenario: Scenario, move: sqlite3.Row) -> None:
    warned = common.progress(move).get("bad_items_encountered", 0) > 0
    status = MoveStatus.COMPLETED_WITH_WARNING if warned else MoveStatus.COMPLETED
    done = common.finish(tx, scenario, move, status)
    _write_history(tx, done)


def _write_history(tx: Tx, move: sqlite3.Row) -> None:
    """MailboxMoveHistory: the completed request, kept on the mailbox itself."""
    found = tx.conn.execute(
        "SELECT attributes FROM mailboxes WHERE address=?", (move["mailbox"],)
    ).fetchone()
    attributes = json.loads(found[0])
    attributes.setdefault("MailboxMoveHistory", []).append({
        "move": move["id"], "source": move["source"], "target": move["target"],
        "status": move["status"], "start_time": move["begun_at"], "completion_time": tx.now,
    })
    tx.conn.execute("UPDATE mailboxes SET attributes=? WHERE address=?",
                    (json.dumps(attributes), move["mailbox"]))


def run_due(tx: Tx, scenario: Scenario) -> int:
    done = 0
    for move in tx.conn.execute(
        "SELECT * FROM moves WHERE engine=? AND status=? AND start_at<=? ORDER BY created_at, id",
        (ENGINE, MoveStatus.QUEUED.value, tx.now),
    ).fetchall():
        if _has_capacity(tx.conn, scenario.defaults, move):
            _begin(tx, scenario, move)
            done += 1
    for move in tx.conn.execute(
        "SELECT * FROM moves WHERE engine=? AND status IN (?,?) AND due_at<=?",
        (ENGINE, *ACTIVE, tx.now),
    ).fetchall():
        _phase_done(tx, scenario, move)
        done += 1
    return done


def _phase_done(tx: Tx, scenario: Scenario, move: sqlite3.Row) -> None:
    step = move["step"]
    if step == SEEDING:
        _enter(tx, scenario, move, COPYING)
    elif step == COPYING:
        _after_copy(tx, scenario, move)
    elif step == INCREMENTAL:
        if common.options(move).suspend_when_ready:
            common.set_status(tx, move, MoveStatus.AUTO_SUSPENDED, AUTO_SUSPENDED,
                              step=AUTO_SUSPENDED, due_at=None)
        else:
            _finalize(tx, scenario, move)
    elif step == FINALIZATION:
        _complete(tx, scenario, move)


def suspend(tx: Tx, move: sqlite3.Row) -> None:
    common.set_status(tx, move, MoveStatus.SUSPENDED, "Suspended", due_at=None)


def resume(tx: Tx, scenario: Scenario, move: sqlite3.Row) -> None:
    """Go on from where the request stopped; from AutoSuspended that is the final sync."""
    step = move["step"]
    if move["status"] == MoveStatus.AUTO_SUSPENDED.value or step == AUTO_SUSPENDED:
        _finalize(tx, scenario, move)
    elif move["status"] != MoveStatus.SUSPENDED.value:
        raise Invalid(f"move {move['id']} is {move['status']}, not suspended")
    elif move["begun_at"] is None:
        common.set_status(tx, move, MoveStatus.QUEUED, "Queued")
    else:
        _enter(tx, scenario, move, step)


def complete(tx: Tx, scenario: Scenario, move: sqlite3.Row) -> None:
    """Finish now: whatever is left of the sync is done at once."""
    if move["status"] == MoveStatus.QUEUED.value:
        _begin(tx, scenario, move)
        move = common.row(tx.conn, move["id"])
    if move["status"] == MoveStatus.COMPLETION_IN_PROGRESS.value:
        _complete(tx, scenario, move)
        return
    _finalize(tx, scenario, move)
    _complete(tx, scenario, common.row(tx.conn, move["id"]))


def fail(tx: Tx, scenario: Scenario, move: sqlite3.Row, reason: str) -> None:
    common.roll_back(tx, scenario, move, "FailedOther", reason)
