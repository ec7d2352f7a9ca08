"""The Exchange 2003 Move Mailbox wizard (seed 000), and the offline 2007 Move-Mailbox.

In: a wizard move (``stores.moves.MoveRecord``), from ``run_due`` (the clock),
``complete`` and ``fail``. Out: the move walked through the wizard's steps,
one ``Machine`` (``STEPS``): wait for the schedule, open MAPI to source and
target, set PR_IN_TRANSIT on the source, create the target in transit, copy
(the mailbox locked throughout), update the directory, then clean up: clear
the target's flag, release the parked mail, delete the source. A failure at
any step before clean-up rolls back. ``hold`` pauses after the copy. Exchange
2007's Move-Mailbox was offline in the same way (KB 2591933), so it runs these
steps too, as engine ``movemailbox2007``.
"""

from __future__ import annotations

import enum
from typing import Any

from mailflow.moves import common
from mailflow.moves.states import MoveStatus
from stores import connectors
from stores import moves as stored
from stores.backend import Tx
from stores.machine import Machine
from stores.moves import MoveRecord
from stores.topology import Scenario

ENGINES = (common.Engine.WIZARD_2003, common.Engine.MOVE_MAILBOX_2007)


class WizardStep(enum.StrEnum):
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


STEPS = Machine.of_targets("wizard step", {
    WizardStep.WAIT_FOR_SCHEDULE: frozenset({WizardStep.OPEN_MAPI, WizardStep.ROLLED_BACK}),
    WizardStep.OPEN_MAPI: frozenset({WizardStep.SET_SOURCE_IN_TRANSIT, WizardStep.ROLLED_BACK}),
    WizardStep.SET_SOURCE_IN_TRANSIT: frozenset({WizardStep.CREATE_TARGET,
                                                 WizardStep.ROLLED_BACK}),
    WizardStep.CREATE_TARGET: frozenset({WizardStep.COPY, WizardStep.ROLLED_BACK}),
    WizardStep.COPY: frozenset({WizardStep.HELD, WizardStep.UPDATE_DIRECTORY,
                                WizardStep.ROLLED_BACK}),
    WizardStep.HELD: frozenset({WizardStep.UPDATE_DIRECTORY, WizardStep.ROLLED_BACK}),
    WizardStep.UPDATE_DIRECTORY: frozenset({WizardStep.CLEAN_UP, WizardStep.ROLLED_BACK}),
    WizardStep.CLEAN_UP: frozenset({WizardStep.DONE}),
    WizardStep.DONE: frozenset(),
    WizardStep.ROLLED_BACK: frozenset(),
})
# Steps that hold one of a batch's threads (and that a restart catches mid-way).
RUNNING = (WizardStep.OPEN_MAPI, WizardStep.SET_SOURCE_IN_TRANSIT, WizardStep.CREATE_TARGET,
           WizardStep.COPY)

# Where ``--fail-at`` can inject a failure.
FAIL_POINTS = ("open-mapi", "create-target", "copy", "directory-update")


def _status(step: WizardStep) -> MoveStatus:
    if step is WizardStep.WAIT_FOR_SCHEDULE:
        return MoveStatus.QUEUED
    if step in (WizardStep.UPDATE_DIRECTORY, WizardStep.CLEAN_UP):
        return MoveStatus.COMPLETION_IN_PROGRESS
    return MoveStatus.IN_PROGRESS


def _check(move: MoveRecord, step: WizardStep) -> None:
    STEPS.move(move.id, WizardStep(move.step), step)


def _to(tx: Tx, move: MoveRecord, step: WizardStep, **fields: Any) -> MoveRecord:
    _check(move, step)
    moved = common.set_status(tx, move, _status(step), step.value, step=step.value, **fields)
    common.event(tx, moved, common.EVENT_STEP, "Information", f"step {step.value}.")
    return moved


class _StepFailed(Exception):
    def __init__(self, reason: str, detail: str = "FailedOther") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def _injected(move: MoveRecord, point: str, detail: str = "FailedOther") -> None:
    if common.options(move).fail_at == point:
        raise _StepFailed(f"failure injected at {point}", detail)


def _fail(tx: Tx, scenario: Scenario, move: MoveRecord, reason: str, detail: str) -> None:
    _check(move, WizardStep.ROLLED_BACK)
    common.roll_back(tx, scenario, move, detail, reason)
    stored.update(tx, move.id, {"step": WizardStep.ROLLED_BACK.value})


def start_steps(tx: Tx, scenario: Scenario, move: MoveRecord) -> None:
    """Steps 2 to 5: open MAPI, lock the source, create the target, start the copy."""
    try:
        move = _to(tx, move, WizardStep.OPEN_MAPI, begun_at=tx.now)
        _injected(move, "open-mapi", "FailedMAPI")
        host = common.options(move).move_host or move.target
        for server in (move.source, move.target):
            # Only an explicit ``rpc block`` stops the wizard's MAPI logon.
            if host != server and connectors.rpc_setting(tx, host, server) is False:
                raise _StepFailed(f"MAPI logon from {host} to {server} failed: RPC is blocked",
                                  "FailedMAPI")
        move = _to(tx, move, WizardStep.SET_SOURCE_IN_TRANSIT)
        stored.lock_source(tx, move)
        move = _to(tx, move, WizardStep.CREATE_TARGET)
        _injected(move, "create-target")
        stored.create_target(tx, move)
        items, size = stored.mailbox_size(tx, move)
        move = _to(tx, move, WizardStep.COPY,
                   due_at=tx.now + common.duration(scenario.defaults, size))
        move = common.set_progress(tx, move, total_mailbox_size=size, items_total=items)
        common.event(tx, move, common.EVENT_STARTED, "Information",
                     "PR_IN_TRANSIT set on source and target; copying.")
    except _StepFailed as failure:
        _fail(tx, scenario, common.load(tx, move.id), failure.reason, failure.detail)


def copy_done(tx: Tx, scenario: Scenario, move: MoveRecord, *, hold: bool = True) -> None:
    """Step 5 ends: over the bad-item limit the move rolls back; else hold or go on."""
    request = common.options(move)
    limit = (request.bad_item_limit if request.bad_item_limit is not None
             else scenario.defaults.wizard_bad_item_limit)
    move = common.set_progress(tx, move, bad_items_encountered=request.bad_items)
    if request.bad_items > limit:
        _fail(tx, scenario, move, f"{request.bad_items} bad items exceed the limit of {limit}",
              "FailedBadItemLimit")
        return
    if request.fail_at == "copy":
        _fail(tx, scenario, move, "failure injected at copy", "FailedOther")
        return
    if request.hold and hold:
        _to(tx, move, WizardStep.HELD, due_at=None)
        return
    finish(tx, scenario, move)


def finish(tx: Tx, scenario: Scenario, move: MoveRecord) -> None:
    """Steps 6 and 7: update the directory (a failure rolls back), then clean up."""
    move = _to(tx, move, WizardStep.UPDATE_DIRECTORY, due_at=None)
    if common.options(move).fail_at == "directory-update":
        _fail(tx, scenario, move, "failure injected at directory-update", "FailedOther")
        return
    move = _to(tx, move, WizardStep.CLEAN_UP)
    _check(move, WizardStep.DONE)
    move = common.finish(tx, scenario, move, MoveStatus.COMPLETED)
    stored.update(tx, move.id, {"step": WizardStep.DONE.value})


def complete(tx: Tx, scenario: Scenario, move: MoveRecord) -> None:
    """``complete`` on a wizard move: run whatever steps are left, now."""
    if WizardStep(move.step) is WizardStep.WAIT_FOR_SCHEDULE:
        start_steps(tx, scenario, move)
        move = common.load(tx, move.id)
    step = WizardStep(move.step)
    if step is WizardStep.COPY:
        copy_done(tx, scenario, move, hold=False)
    elif step is WizardStep.HELD:
        finish(tx, scenario, move)


def fail(tx: Tx, scenario: Scenario, move: MoveRecord, reason: str) -> None:
    _fail(tx, scenario, move, reason, "FailedOther")


def run_due(tx: Tx, scenario: Scenario) -> int:
    """Start wizard moves whose schedule came (as batch threads allow) and end due copies."""
    done = 0
    threads = scenario.defaults.wizard_threads
    for move in stored.at_step(tx, ENGINES, WizardStep.WAIT_FOR_SCHEDULE, started=True):
        if move.batch is not None and stored.count_in_batch(tx, move.batch, RUNNING) >= threads:
            continue
        start_steps(tx, scenario, move)
        done += 1
    for move in stored.at_step(tx, ENGINES, WizardStep.COPY, due=True):
        copy_done(tx, scenario, move)
        done += 1
    return done


def recover(tx: Tx, scenario: Scenario) -> int:
    """After a crash the wizard process is gone: a move caught mid-copy rolls back."""
    caught = stored.at_steps(tx, ENGINES, RUNNING)
    for move in caught:
        _fail(tx, scenario, move, "the Move Mailbox process ended (lab restart)", "FailedOther")
    return len(caught)
