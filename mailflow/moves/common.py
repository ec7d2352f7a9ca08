"""What every move engine shares: the request, status changes, finishing and rolling back.

In: a validated ``MoveRequest`` and the engines' decisions about a
``stores.moves.MoveRecord``. Out: the move's status, status_detail, step,
progress and history (through ``MOVES``, the one status machine), its events,
PR_IN_TRANSIT on the source and target stores and the directory update of a
finished move (``stores.moves``), and the release of every pair parked for the
mailbox to the categorizer and the MTA.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from mailflow.errors import Invalid, NotFound
from mailflow.moves.states import MOVES, MoveStatus
from routing import adc, categorizer, mta
from stores import moves as stored
from stores.backend import Tx
from stores.moves import MoveRecord
from stores.topology import Defaults, Scenario, Version


class Engine(enum.StrEnum):
    """The tool a move runs in: the 2003 wizard, 2007's offline Move-Mailbox, 2010's MRS."""

    WIZARD_2003 = "wizard2003"
    MOVE_MAILBOX_2007 = "movemailbox2007"
    MRS_2010 = "mrs2010"


ENGINES = tuple(Engine)
# mailflow's own event ids for move milestones; Exchange logged these differently per version.
EVENT_STARTED, EVENT_COMPLETED, EVENT_FAILED, EVENT_STEP = 1001, 1002, 1003, 1004


@dataclass(frozen=True)
class MoveRequest:
    """A move as asked for (CLI flags, API body)."""

    hold: bool = False
    at: float | None = None
    engine: str | None = None
    # None: what the version pair allows (``mailflow.moves.versions``); False: --offline.
    online: bool | None = None
    bad_items: int = 0
    bad_item_limit: int | None = None
    suspend_when_ready: bool = False
    fail_at: str | None = None
    batch: str | None = None
    move_host: str | None = None
    # Set by the version rules, not by the asker: "push", "pull" or None (legacy engines).
    direction: str | None = None
    # MRS: New-MoveRequest -Suspend and -SuspendComment.
    suspend: bool = False
    suspend_comment: str | None = None
    # Set by the lab: the MRS instance (a 2010 Client Access server) that runs the request.
    mrs_server: str | None = None


def pick_engine(source_version: Version, target_version: Version) -> Engine:
    """The tool that version pair was moved with: MRS to or from 2010, Move-Mailbox with 2007."""
    versions = {source_version, target_version}
    if any(v.online_moves for v in versions):
        return Engine.MRS_2010
    if Version.V2007 in versions:
        return Engine.MOVE_MAILBOX_2007
    return Engine.WIZARD_2003


def duration(defaults: Defaults, mailbox_bytes: int) -> float:
    """Simulated seconds the copy of a mailbox takes: a fixed start-up plus the bytes."""
    return defaults.move_base_seconds + mailbox_bytes / defaults.move_bytes_per_second


def load(tx: Tx, move_id: str) -> MoveRecord:
    """The move as it is now; NotFound when there is none."""
    found = stored.get(tx, move_id)
    if found is None:
        raise NotFound(f"no move {move_id!r}")
    return found


def options(move: MoveRecord) -> MoveRequest:
    return MoveRequest(**move.options)


def set_progress(tx: Tx, move: MoveRecord, **counters: Any) -> MoveRecord:
    """Record progress counters without a status change; returns the move as it is now."""
    stored.update(tx, move.id, {"progress": {**move.progress, **counters}})
    return load(tx, move.id)


def set_status(
    tx: Tx, move: MoveRecord, status: MoveStatus, detail: str, *, step: str | None = None,
    progress_update: dict[str, Any] | None = None, **fields: Any,
) -> MoveRecord:
    """Move the request to ``status``/``detail``, recorded in its history; returns the new move."""
    if status != move.status:
        MOVES.move(move.id, move.status, status)
    history = list(move.history)
    if (status, detail) != (move.status, move.status_detail):
        history.append({"status": status.value, "status_detail": detail, "time": tx.now})
    values = {"status": status.value, "status_detail": detail, "history": history, **fields}
    if step is not None:
        values["step"] = step
    if progress_update:
        values["progress"] = {**move.progress, **progress_update}
    stored.update(tx, move.id, values)
    return load(tx, move.id)


def event(tx: Tx, move: MoveRecord, event_id: int, level: str, text: str) -> None:
    tx.event("mailflow", event_id, level, move.source,
             f"Move {move.id} ({move.engine}) of {move.mailbox}: {text}")


def finish(tx: Tx, scenario: Scenario, move: MoveRecord, status: MoveStatus) -> MoveRecord:
    """Copy done, directory updated: clear the flag on the target, remove the source, release."""
    items = stored.rehome(tx, scenario, move)
    adc.moved(tx, scenario, move.mailbox, move.source, move.target)
    begun = move.begun_at if move.begun_at is not None else move.start_at
    tx.note("move_duration", tx.now - begun, engine=move.engine)
    size = move.progress.get("total_mailbox_size", 0)
    done = set_status(tx, move, status, "Completed", finished_at=tx.now,
                      due_at=None, progress_update={"items_transferred": items,
                                                    "bytes_transferred": size})
    event(tx, done, EVENT_COMPLETED, "Information",
          f"completed; mailbox now on {move.target}, directory updated.")
    release(tx, scenario, move.mailbox)
    return done


def roll_back(
    tx: Tx, scenario: Scenario, move: MoveRecord, detail: str, reason: str
) -> MoveRecord:
    """The move failed: the mailbox stays on the source, its flag cleared, its mail released."""
    stored.unlock(tx, move)
    failed = set_status(tx, move, MoveStatus.FAILED, detail, finished_at=tx.now, due_at=None,
                        progress_update={"failure_step": move.step, "failure_reason": reason})
    event(tx, failed, EVENT_FAILED, "Error", f"failed at {move.step or 'start'} and was"
          f" rolled back: {reason}.")
    release(tx, scenario, move.mailbox)
    return failed


def release(tx: Tx, scenario: Scenario, mailbox: str) -> None:
    """PR_IN_TRANSIT is clear: deferred mail goes back to the categorizer, InTransitFolder
    mail to the MTA."""
    categorizer.release(tx, scenario, mailbox)
    mta.release_holding(tx, scenario, mailbox)


def check_fail_at(request: MoveRequest, steps: tuple[str, ...]) -> None:
    if request.fail_at is not None and request.fail_at not in steps:
        raise Invalid(f"fail_at must be one of {', '.join(steps)}")
