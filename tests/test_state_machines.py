"""Hypothesis stateful tests of the state machines: moves, queues, messages, the 2003 wizard's
steps and the MRS phases."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from mailflow.moves.mrs2010 import PHASES, Phase
from mailflow.moves.states import FINAL as MOVE_FINAL
from mailflow.moves.states import MOVES, MoveStatus
from mailflow.moves.states import TRANSITIONS as MOVE_TRANSITIONS
from mailflow.moves.wizard2003 import STEPS, WizardStep
from stores import db, messages
from stores import queue_state as queues
from stores.audit import audit
from stores.machine import InvalidTransition, Machine
from stores.messages import FINAL, Pair, PairState, queue_state
from stores.queue_state import QueueStatus

QUEUE_IDS = ["local", "deferred", "unreachable", "smtp:B", "holding", "mta:B", "mta:x400:X"]


class MoveMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.status = MoveStatus.QUEUED
        self.seen = [self.status]

    @rule(new=st.sampled_from(list(MoveStatus)))
    def step(self, new: MoveStatus) -> None:
        before = self.status
        try:
            self.status = MOVES.move("m", self.status, new)
        except InvalidTransition as exc:
            assert new not in MOVE_TRANSITIONS[before]
            assert before.value in str(exc) and new.value in str(exc)
        else:
            assert new in MOVE_TRANSITIONS[before]
            self.seen.append(self.status)

    @invariant()
    def final_is_final(self) -> None:
        # Once a move is final, nothing after it in its history.
        finals = [i for i, s in enumerate(self.seen) if s in MOVE_FINAL]
        assert not finals or finals[0] == len(self.seen) - 1


class QueueMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.conn = sqlite3.connect(":memory:", isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        db.migrate(self.conn)

    def teardown(self) -> None:
        self.conn.close()

    @rule(new=st.sampled_from(list(QueueStatus)))
    def step(self, new: QueueStatus) -> None:
        before = queues.status(self.conn, "A", "smtp:B")
        try:
            queues.set_status(self.conn, "A", "smtp:B", new, next_retry=1.0)
        except InvalidTransition as exc:
            assert new not in queues.TRANSITIONS[before] and before != new
            assert "A\\B" in str(exc)
            assert queues.status(self.conn, "A", "smtp:B") == before
        else:
            assert queues.status(self.conn, "A", "smtp:B") == new

    @invariant()
    def frozen_only_thaws_to_ready(self) -> None:
        assert queues.TRANSITIONS[QueueStatus.FROZEN] == {QueueStatus.READY}


class PairMachine(RuleBasedStateMachine):
    """Pairs moved at random between queues and final states, checked by the audit."""

    def __init__(self) -> None:
        super().__init__()
        self.conn = sqlite3.connect(":memory:", isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        db.migrate(self.conn)
        self.conn.execute("INSERT INTO store_mailboxes(server, mailbox) VALUES ('A', 'm')")
        self.tx = db.tx(self.conn, 0.0, 0.0)
        self.count = 0

    def teardown(self) -> None:
        self.conn.close()

    def _pair(self, pair_id: int) -> Pair:
        return messages.load(self.conn, "p.id = ?", (pair_id,))[0]

    @rule()
    def accept(self) -> None:
        self.count += 1
        message = f"M{self.count}"
        self.conn.execute("INSERT INTO messages(id, message_id, mail_from, subject, size, raw,"
                          " accepted_server, accepted_at, accepted_real)"
                          " VALUES (?, '', '', '', 1, x'', 'A', 0, 0)",
                          (message,))
        self.conn.execute("INSERT INTO pairs(message, rcpt, state, server, queue, queued_at)"
                          " VALUES (?, 'r', 'local', 'A', 'local', 0)", (message,))
        self.tx.trace(message, "r", "A", "accepted")
        self.tx.flush_traces()

    @precondition(lambda self: self.count > 0)
    @rule(data=st.data(), queue=st.sampled_from(QUEUE_IDS), server=st.sampled_from("AB"))
    def requeue(self, data: st.DataObject, queue: str, server: str) -> None:
        pair = self._pair(data.draw(st.integers(1, self.count)))
        try:
            messages.place_queued(self.tx, pair, server, queue)
        except InvalidTransition:
            assert pair.state in FINAL or queue_state(queue) not in messages.TRANSITIONS[pair.state]

    @precondition(lambda self: self.count > 0)
    @rule(data=st.data(), state=st.sampled_from(sorted(FINAL)))
    def finish(self, data: st.DataObject, state: PairState) -> None:
        pair = self._pair(data.draw(st.integers(1, self.count)))
        before = pair.state
        try:
            messages.place_final(self.tx, pair, state)
        except InvalidTransition:
            assert before in FINAL
            assert self._pair(pair.id).state is before
            return
        if state is PairState.DELIVERED:
            self.conn.execute("INSERT INTO items(server, mailbox, folder, pair, message, size,"
                              " delivered_at) VALUES ('A', 'm', 'Inbox', ?, ?, 1, 0)",
                              (pair.id, pair.message))

    @invariant()
    def every_pair_in_exactly_one_place(self) -> None:
        report = audit(self.conn, {"A", "B"})
        assert report.clean, report.problems
        assert report.accepted == self.count


def walk(machine: Machine[Any, Any], start: Any) -> type[RuleBasedStateMachine]:
    """A stateful test of a "go to state X" machine: every event the table allows moves there,
    every other one raises InvalidTransition naming the machine and leaves the state as it
    was."""

    class Walk(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.state = start

        @rule(event=st.sampled_from(list(type(start))))
        def step(self, event: Any) -> None:
            before = self.state
            try:
                self.state = machine.move("x", before, event)
            except InvalidTransition as exc:
                assert not machine.can(before, event)
                assert machine.name in str(exc) and self.state is before
            else:
                assert machine.can(before, event) and self.state is event

        @invariant()
        def known_state(self) -> None:
            assert self.state in machine.table

    Walk.__name__ = f"{machine.name.title().replace(' ', '')}Walk"
    return Walk


WizardMachine = walk(STEPS, WizardStep.WAIT_FOR_SCHEDULE)
PhaseMachine = walk(PHASES, Phase.QUEUED)


@pytest.mark.parametrize("machine", [MoveMachine, QueueMachine, PairMachine, WizardMachine,
                                     PhaseMachine])
def test_state_machine(machine: type[RuleBasedStateMachine]) -> None:
    machine.TestCase().runTest()
