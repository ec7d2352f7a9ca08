"""The move state machine: the RequestStatus values of Exchange 2010 move requests.

In: a move's current status and the one an engine wants next. Out: the new
status, or ``InvalidMoveTransition`` naming both. Every engine moves its
requests through ``transition`` and nothing else.
"""

from __future__ import annotations

import enum


class MoveStatus(enum.StrEnum):
    QUEUED = "Queued"
    IN_PROGRESS = "InProgress"
    AUTO_SUSPENDED = "AutoSuspended"
    SUSPENDED = "Suspended"
    COMPLETION_IN_PROGRESS = "CompletionInProgress"
    COMPLETED = "Completed"
    COMPLETED_WITH_WARNING = "CompletedWithWarning"
    FAILED = "Failed"


FINAL = frozenset({MoveStatus.COMPLETED, MoveStatus.COMPLETED_WITH_WARNING, MoveStatus.FAILED})

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


class InvalidMoveTransition(RuntimeError):
    def __init__(self, move: str, current: MoveStatus, new: MoveStatus) -> None:
        super().__init__(f"move {move}: invalid transition {current.value} -> {new.value}")
        self.current = current
        self.new = new


def transition(move: str, current: MoveStatus, new: MoveStatus) -> MoveStatus:
    if new not in TRANSITIONS[current]:
        raise InvalidMoveTransition(move, current, new)
    return new
