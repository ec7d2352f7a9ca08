"""One state-machine helper for every machine of the lab (pairs, queues, moves, steps).

In: a machine's transition table, its current state and the event asked of it.
Out: the next state, or ``InvalidTransition`` naming the machine, the subject,
the state and the event. Most machines here are "go to state X" machines, where
the event is the state asked for: ``Machine.of_targets`` builds their table.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Generic, TypeVar

S = TypeVar("S", bound=enum.Enum)
E = TypeVar("E", bound=enum.Enum)


class InvalidTransition(RuntimeError):
    """An event the machine's table does not allow in the current state."""

    def __init__(self, machine: str, subject: str, state: enum.Enum, event: enum.Enum) -> None:
        super().__init__(
            f"{machine} {subject}: invalid transition {_name(state)} -> {_name(event)}"
        )
        self.machine = machine
        self.subject = subject
        self.current = state
        self.event = event


def _name(value: enum.Enum) -> str:
    return str(value.value) if isinstance(value.value, str) else value.name


class Machine(Generic[S, E]):
    """A transition table ``state -> {event: next state}`` and the one function that moves."""

    def __init__(self, name: str, table: Mapping[S, Mapping[E, S]]) -> None:
        self.name = name
        self.table = table

    @classmethod
    def of_targets(cls, name: str, targets: Mapping[S, frozenset[S]]) -> Machine[S, S]:
        """A machine whose events are the states asked for: ``state -> allowed next states``."""
        return Machine(name, {state: {t: t for t in allowed} for state, allowed in targets.items()})

    def allowed(self, state: S) -> frozenset[E]:
        return frozenset(self.table[state])

    def can(self, state: S, event: E) -> bool:
        return event in self.table[state]

    def move(self, subject: object, state: S, event: E) -> S:
        """The state after ``event``, or ``InvalidTransition`` for ``subject``."""
        try:
            return self.table[state][event]
        except KeyError:
            raise InvalidTransition(self.name, str(subject), state, event) from None
