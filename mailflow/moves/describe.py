"""A move as the API and the CLI show it.

In: a ``stores.moves.MoveRecord`` and the lab's clock. Out: the JSON document
of the move (``describe``), with a PercentComplete that grows with the steps
of its engine and, within a timed step, with the clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mailflow.moves.common import MoveRequest, options
from mailflow.moves.mrs2010 import ENGINE as MRS
from mailflow.moves.mrs2010 import Phase
from mailflow.moves.statistics import statistics
from mailflow.moves.wizard2003 import WizardStep
from stores.moves import MoveRecord, MoveStatus

# PercentComplete as each step spans it: (where the step starts, where it ends).
PERCENT_SPANS: dict[str, tuple[int, int]] = {
    WizardStep.COPY: (0, 90), WizardStep.HELD: (90, 90), WizardStep.UPDATE_DIRECTORY: (95, 95),
    WizardStep.CLEAN_UP: (99, 99), Phase.SEEDING: (0, 10), Phase.INCREMENTAL: (90, 95),
    Phase.AUTO_SUSPENDED: (95, 95), Phase.FINALIZATION: (95, 99),
}
# An MRS copy starts where its initial seeding ended.
MRS_COPY_SPAN = (10, 90)


def percent_complete(move: MoveRecord, now: float) -> int:
    """Grows with the steps and, within a timed step, with the clock; never goes back."""
    if move.status in (MoveStatus.COMPLETED, MoveStatus.COMPLETED_WITH_WARNING):
        return 100
    if move.step == Phase.COPYING and move.engine == MRS:
        low, high = MRS_COPY_SPAN
    else:
        low, high = PERCENT_SPANS.get(move.step, (0, 0))
    since = move.history[-1]["time"] if move.history else now
    if move.due_at and move.due_at > since and high > low:
        share = min(1.0, max(0.0, (now - since) / (move.due_at - since)))
        return int(low + (high - low) * share)
    return low


def describe(move: MoveRecord, now: float, position: tuple[int, int] = (0, 0)
             ) -> dict[str, Any]:
    """The move; ``position`` is a Queued request's (place, length) in its queue."""
    request, done = options(move), move.progress
    return {**_fields(move, now, request, done), **statistics(move, now, position),
            "suspend": request.suspend, "suspend_comment": request.suspend_comment}


def _fields(move: MoveRecord, now: float, request: MoveRequest, done: Mapping[str, Any]
            ) -> dict[str, Any]:
    return {
        "id": move.id,
        "mailbox": move.mailbox,
        "source": move.source,
        "target": move.target,
        "engine": move.engine,
        "batch": move.batch,
        "status": move.status.value,
        "status_detail": move.status_detail,
        "step": move.step,
        "hold": request.hold,
        # Only MRS moves online; a request stored before that was checked may say otherwise.
        "online": bool(request.online) and move.engine == MRS,
        "direction": request.direction,
        "suspend_when_ready": request.suspend_when_ready,
        "percent_complete": percent_complete(move, now),
        "bytes_transferred": done.get("bytes_transferred", 0),
        "items_transferred": done.get("items_transferred", 0),
        "total_mailbox_size": done.get("total_mailbox_size", 0),
        "bad_item_limit": request.bad_item_limit,
        "bad_items_encountered": done.get("bad_items_encountered", 0),
        "failure_step": done.get("failure_step"),
        "failure_reason": done.get("failure_reason"),
        "created_at": move.created_at,
        "start_at": move.start_at,
        "due_at": move.due_at,
        "finished_at": move.finished_at,
        "history": [dict(h) for h in move.history],
    }
