"""The move state machine: the RequestStatus values of Exchange 2010 move requests.

In: a move's current status and the one an engine wants next. Out: the new
status through ``MOVES.move``, or ``stores.machine.InvalidTransition`` naming
both. Every engine moves its requests through ``MOVES`` and nothing else.
``MoveStatus`` and ``FINAL`` are the values the store keeps (``stores.moves``).
"""

from __future__ import annotations

from stores.machine import Machine
from stores.moves import FINAL, MoveStatus

__all__ = ["FINAL", "MOVES", "TRANSITIONS", "MoveStatus"]

TRANSITIONS: dict[MoveStatus, frozenset[MoveStatus]] = {
    MoveStatus.QUEUED: frozenset(
        {MoveStatus.IN_PROGRESS, MoveStatus.SUSPENDED, MoveStatus.FAILED}
    ),
    MoveStatus.IN_PROGRESS: frozenset(
        {MoveStatus.AUTO_SUSPENDED, MoveStatus.SUSPENDED, MoveStatus.COMPLETION_IN_PROGRESS,
         MoveStatus.FAILED}
    ),
    MoveStatus.AUTO_SUSPENDED: frozenset(
        {MoveStatus.IN_PROGRESS, MoveStatus.SUSPENDED, MoveStatus.COMPLETION_IN_PROGRESS,
         MoveStatus.FAILED}
    ),
    MoveStatus.SUSPENDED: frozenset(
        {MoveStatus.QUEUED, MoveStatus.IN_PROGRESS, MoveStatus.COMPLETION_IN_PROGRESS,
         MoveStatus.FAILED}
    ),
    MoveStatus.COMPLETION_IN_PROGRESS: frozenset(
        {MoveStatus.COMPLETED, MoveStatus.COMPLETED_WITH_WARNING, MoveStatus.FAILED}
    ),
    MoveStatus.COMPLETED: frozenset(),
    MoveStatus.COMPLETED_WITH_WARNING: frozenset(),
    MoveStatus.FAILED: frozenset(),
}

MOVES = Machine.of_targets("move", TRANSITIONS)
