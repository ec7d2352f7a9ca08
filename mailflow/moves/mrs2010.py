"""Exchange 2010 move requests, run by the Mailbox Replication Service (seed 001).

In: MRS moves (``stores.moves.MoveRecord``), from ``run_due`` (the clock) and
suspend, resume, complete and fail. Out: requests walked through RequestStatus
and their ``Phase`` (the StatusDetail, one ``Machine``): Queued, then InProgress
(InitialSeeding, CopyingMessages, IncrementalSync), AutoSuspended when asked to
wait, CompletionInProgress (Finalization) and Completed. An online move locks
the mailbox (PR_IN_TRANSIT) only for the final sync and directory update;
``online: false`` locks it from the start. Transient faults retry every
RetryDelay up to MaxRetries; bad items over BadItemLimit fail the request; the
MRS limits keep extra requests Queued (``mrs_service.has_capacity``). At the end
of every phase the request passes the gates of ``mrs_service`` (RPC from its MRS
instance to the source and target): a gate that holds it makes it
TransientFailure, retried every RetryDelay, FailedNetwork after MaxRetries, and
it goes on from its phase once the gate opens.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from mailflow.errors import Invalid
from mailflow.moves import common, data_guarantee, mrs_service
from mailflow.moves.states import MoveStatus
from stores import moves as stored
from stores.backend import Tx
from stores.machine import Machine
from stores.moves import MoveRecord
from stores.topology import Defaults, Scenario

ENGINE = common.Engine.MRS_2010


class Phase(enum.StrEnum):
    """The phase of an MRS request, kept in the move's step."""

    QUEUED = "Queued"
    SEEDING = "InitialSeeding"
    COPYING = "CopyingMessages"
    INCREMENTAL = "IncrementalSync"
    AUTO_SUSPENDED = "AutoSuspended"
    FINALIZATION = "Finalization"


# Each phase goes to the next; resume re-enters the phase a request was suspended in,
# and complete jumps from any phase to Finalization.
PHASES = Machine.of_targets("MRS phase", {
    Phase.QUEUED: frozenset({Phase.SEEDING, Phase.FINALIZATION}),
    Phase.SEEDING: frozenset({Phase.SEEDING, Phase.COPYING, Phase.FINALIZATION}),
    Phase.COPYING: frozenset({Phase.COPYING, Phase.INCREMENTAL, Phase.FINALIZATION}),
    Phase.INCREMENTAL: frozenset({Phase.INCREMENTAL, Phase.AUTO_SUSPENDED, Phase.FINALIZATION}),
    Phase.AUTO_SUSPENDED: frozenset({Phase.FINALIZATION}),
    Phase.FINALIZATION: frozenset(),
})
ACTIVE = mrs_service.ACTIVE
# The network gates, then the DAG's (issue 19): a dismounted database, the data guarantee.
GATES = mrs_service.GATES + data_guarantee.GATES
# Progress keys a stalled request keeps until the gates pass again.
_STALL_KEYS = (*mrs_service.STALL_PROGRESS, *data_guarantee.STALL_PROGRESS)


def transient_failures(fail_at: str | None) -> int:
    """How many transient faults ``--fail-at transient:N`` injects."""
    if fail_at is None or not fail_at.startswith("transient:"):
        return 0
    count = fail_at.removeprefix("transient:")
    if not count.isdigit():
        raise Invalid("fail_at transient:N wants a whole number N")
    return int(count)


def phase_seconds(defaults: Defaults, phase: Phase, mailbox_bytes: int) -> float:
    """Simulated length of one phase: the copy takes the bytes, the others half the base."""
    if phase is Phase.COPYING:
        return mailbox_bytes / defaults.move_bytes_per_second
    return defaults.move_base_seconds / 2


def _enter(tx: Tx, scenario: Scenario, move: MoveRecord, phase: Phase) -> MoveRecord:
    PHASES.move(move.id, Phase(move.step), phase)
    size = move.progress.get("total_mailbox_size", 0)
    status = (MoveStatus.COMPLETION_IN_PROGRESS if phase is Phase.FINALIZATION
              else MoveStatus.IN_PROGRESS)
    moved = common.set_status(tx, move, status, phase.value, step=phase.value,
                              due_at=tx.now + phase_seconds(scenario.defaults, phase, size))
    common.event(tx, moved, common.EVENT_STEP, "Information", f"{status.value}/{phase.value}.")
    return moved


def _begin(tx: Tx, scenario: Scenario, move: MoveRecord) -> MoveRecord:
    items, size = stored.mailbox_size(tx, move)
    stored.create_target(tx, move)
    if not common.options(move).online:
        stored.lock_source(tx, move)
    stored.update(tx, move.id, {"begun_at": tx.now, "progress": {
        **move.progress, "total_mailbox_size": size, "items_total": items}})
    move = _enter(tx, scenario, common.load(tx, move.id), Phase.SEEDING)
    common.event(tx, move, common.EVENT_STARTED, "Information", "move request started.")
    return move


def _after_copy(tx: Tx, scenario: Scenario, move: MoveRecord) -> None:
    request, done = common.options(move), move.progress
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
    moved = common.set_status(tx, move, MoveStatus.IN_PROGRESS, Phase.COPYING.value,
                              progress_update={
        "bad_items_encountered": request.bad_items,
        "bytes_transferred": done.get("total_mailbox_size", 0),
        "items_transferred": done.get("items_total", 0),
    })
    if request.bad_items > limit:
        common.roll_back(tx, scenario, moved, "FailedBadItemLimit",
                         f"{request.bad_items} bad items exceed BadItemLimit {limit}")
        return
    _enter(tx, scenario, moved, Phase.INCREMENTAL)


def _bad_item_limit(scenario: Scenario, move: MoveRecord) -> int:
    limit = common.options(move).bad_item_limit
    return scenario.defaults.mrs_bad_item_limit if limit is None else limit


def _after_incremental(tx: Tx, scenario: Scenario, move: MoveRecord) -> None:
    if common.options(move).suspend_when_ready:
        PHASES.move(move.id, Phase(move.step), Phase.AUTO_SUSPENDED)
        common.set_status(tx, move, MoveStatus.AUTO_SUSPENDED, Phase.AUTO_SUSPENDED.value,
                          step=Phase.AUTO_SUSPENDED.value, due_at=None)
    else:
        _finalize(tx, scenario, move)


def _finalize(tx: Tx, scenario: Scenario, move: MoveRecord) -> None:
    """Final sync and directory update: the only time an online move locks the mailbox."""
    stored.lock_source(tx, move)
    _enter(tx, scenario, move, Phase.FINALIZATION)


def _complete(tx: Tx, scenario: Scenario, move: MoveRecord) -> None:
    warned = move.progress.get("bad_items_encountered", 0) > 0
    status = MoveStatus.COMPLETED_WITH_WARNING if warned else MoveStatus.COMPLETED
    done = common.finish(tx, scenario, move, status)
    stored.append_move_history(tx, done.mailbox, {
        "move": done.id, "source": done.source, "target": done.target,
        "status": done.status.value, "start_time": done.begun_at, "completion_time": tx.now,
    })


def _enter_copy(tx: Tx, scenario: Scenario, move: MoveRecord) -> None:
    _enter(tx, scenario, move, Phase.COPYING)


# What the end of each timed phase leads to.
_PHASE_DONE: dict[Phase, Callable[[Tx, Scenario, MoveRecord], None]] = {
    Phase.SEEDING: _enter_copy,
    Phase.COPYING: _after_copy,
    Phase.INCREMENTAL: _after_incremental,
    Phase.FINALIZATION: _complete,
}


def run_due(tx: Tx, scenario: Scenario) -> int:
    done = 0
    for move in stored.queued_due(tx, ENGINE):
        if mrs_service.has_capacity(tx, scenario, move, ENGINE, move.options.get("mrs_server")):
            _begin(tx, scenario, move)
            done += 1
    for move in stored.phase_due(tx, ENGINE, ACTIVE):
        stall = mrs_service.first_stall(tx, scenario, move, GATES)
        handler = _PHASE_DONE.get(Phase(move.step))
        if stall is not None:
            _stalled(tx, scenario, move, stall)
        elif handler is not None:
            handler(tx, scenario, _going_on(tx, move))
        done += 1
    return done


def _stalled(tx: Tx, scenario: Scenario, move: MoveRecord, stall: mrs_service.Stall) -> None:
    """A gate holds the request: retry every RetryDelay, fail after MaxRetries (seed 001);
    the phase stays what it was, so the request goes on from there."""
    retries = move.progress.get(stall.counter, 0) + 1
    most = scenario.defaults.mrs_max_retries if stall.max_retries is None else stall.max_retries
    delay = (scenario.defaults.mrs_retry_delay_seconds if stall.retry_seconds is None
             else stall.retry_seconds)
    if retries > most:
        failed = common.roll_back(tx, scenario, move, stall.failed_detail,
                                  f"{stall.reason}; gave up after"
                                  f" {stall.limit_name} ({most})")
        common.set_progress(tx, failed, failure_type=stall.failure_type,
                            failure_side=stall.side, failure_timestamp=tx.now)
        return
    if retries == 1:
        common.event(tx, move, common.EVENT_STEP, "Warning", f"{stall.reason}; retrying every"
                     f" {delay:g} s.")
    common.set_status(tx, move, move.status, stall.detail, due_at=tx.now + delay,
                      progress_update={stall.counter: retries, "stall_reason": stall.reason})


def _going_on(tx: Tx, move: MoveRecord) -> MoveRecord:
    """The gates passed: a request that was stalled forgets its retry counts."""
    if not set(_STALL_KEYS) & set(move.progress):
        return move
    kept = {k: v for k, v in move.progress.items() if k not in _STALL_KEYS}
    stored.update(tx, move.id, {"progress": kept})
    return common.load(tx, move.id)


def suspend(tx: Tx, move: MoveRecord) -> None:
    common.set_status(tx, move, MoveStatus.SUSPENDED, "Suspended", due_at=None)


def resume(tx: Tx, scenario: Scenario, move: MoveRecord) -> None:
    """Go on from where the request stopped; from AutoSuspended that is the final sync."""
    if move.status is MoveStatus.AUTO_SUSPENDED or move.step == Phase.AUTO_SUSPENDED:
        _finalize(tx, scenario, move)
    elif move.status is not MoveStatus.SUSPENDED:
        raise Invalid(f"move {move.id} is {move.status.value}, not suspended")
    elif move.begun_at is None:
        common.set_status(tx, move, MoveStatus.QUEUED, "Queued")
    else:
        _enter(tx, scenario, move, Phase(move.step))


def complete(tx: Tx, scenario: Scenario, move: MoveRecord) -> None:
    """Finish now: whatever is left of the sync is done at once."""
    if move.status is MoveStatus.QUEUED:
        move = _begin(tx, scenario, move)
    if move.status is MoveStatus.COMPLETION_IN_PROGRESS:
        _complete(tx, scenario, move)
        return
    _finalize(tx, scenario, move)
    _complete(tx, scenario, common.load(tx, move.id))


def fail(tx: Tx, scenario: Scenario, move: MoveRecord, reason: str) -> None:
    common.roll_back(tx, scenario, move, "FailedOther", reason)
