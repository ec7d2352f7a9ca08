"""Hypothesis drives moves, copy lag, suspended copies, failovers, dismounts and mail on a real
exchange-2010-dag lab (issue 19).

Whatever happens, the audit stays clean (no message lost or delivered twice), no mailbox stays
in transit once its request is final, mail waits only in a delivery queue (for a mailbox in
transit or a dismounted database), and once the databases are mounted and caught up and the
clock runs past every retry, every request is final and nothing waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from mailflow.actions import databases as dag
from mailflow.errors import LabError
from mailflow.moves import dispatch as moves
from mailflow.moves.states import FINAL
from mailflow.scenarios import load
from stores import databases
from stores.audit import audit
from stores.machine import InvalidTransition
from tests.conftest import build_lab
from tests.helpers import assert_nothing_in_transit_after_a_final_state, send

MAILBOXES = ["alice@contoso.test", "bob@contoso.test", "carol@contoso.test",
             "dave@contoso.test"]
SERVERS = ["EX2010-R1", "EX2010-R2", "EX2010-D1", "EX2010-D2"]
COPIES = [("DAG-DB01", "EX2010-R2"), ("DAG-DB01", "EX2010-D1"), ("DAG-DB02", "EX2010-D1")]
DATABASES = ["DAG-DB01", "DAG-DB02"]


class DagMachine(RuleBasedStateMachine):
    constraint = "SecondCopy"

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="mailflow-dag-"))
        self.loop = asyncio.new_event_loop()
        dag = load("exchange-2010-dag")
        self.lab = build_lab(self.dir / "data", dataclasses.replace(dag, databases=tuple(
            dataclasses.replace(d, constraint=self.constraint) for d in dag.databases)))
        self.lab.http = None
        self._run(self.lab.start())
        self.sent = 0
        self.ids: list[str] = []

    def _run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def _change(self, fn: Any) -> None:
        """One operator change; refused ones change nothing."""
        with contextlib.suppress(LabError, InvalidTransition):
            self._run(self.lab.store.write(lambda tx: fn(tx, self.lab.scenario)))
        self._run(self.lab.settle())

    def teardown(self) -> None:
        self._run(self.lab.stop())
        self.loop.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(mailbox=st.sampled_from(MAILBOXES), server=st.sampled_from(SERVERS))
    def start(self, mailbox: str, server: str) -> None:
        request = moves.MoveRequest(engine="mrs2010")
        with contextlib.suppress(LabError):
            self.ids.append(self._run(self.lab.store.write(
                lambda tx: moves.start(tx, self.lab.scenario, mailbox, server, request))))

    @precondition(lambda self: self.ids)
    @rule(data=st.data(), action=st.sampled_from(["complete", "fail", "remove"]))
    def act(self, data: st.DataObject, action: str) -> None:
        move_id = data.draw(st.sampled_from(self.ids))
        run = {"complete": moves.complete, "fail": moves.fail, "remove": moves.remove}[action]
        self._change(lambda tx, s: run(tx, s, move_id))

    @rule(copy=st.sampled_from(COPIES), length=st.sampled_from([0, 0, 20]))
    def lag(self, copy: tuple[str, str], length: int) -> None:
        self._change(lambda tx, s: dag.lag(tx, s, *copy, length, None))

    @rule(copy=st.sampled_from(COPIES), suspend=st.booleans())
    def suspend(self, copy: tuple[str, str], suspend: bool) -> None:
        self._change(lambda tx, s: dag.set_suspended(tx, s, *copy, suspend))

    @rule(database=st.sampled_from(DATABASES), server=st.sampled_from(SERVERS))
    def failover(self, database: str, server: str) -> None:
        self._change(lambda tx, s: dag.failover(tx, s, database, server))

    @rule(database=st.sampled_from(DATABASES), mount=st.booleans())
    def mount(self, database: str, mount: bool) -> None:
        self._change(lambda tx, s: dag.set_mounted(tx, s, database, mount))

    @rule(via=st.sampled_from(SERVERS), to=st.sampled_from(MAILBOXES))
    def send_mail(self, via: str, to: str) -> None:
        self._run(send(self.lab, via, to))
        self.sent += 1
        self._run(self.lab.settle())

    @rule(seconds=st.sampled_from([10, 60, 300, 1900]))
    def advance(self, seconds: int) -> None:
        self._run(self.lab.advance(seconds))

    @rule()
    def heal_and_wait(self) -> None:
        """Every database mounted, every copy caught up; then past every retry window."""
        for database in DATABASES:
            self._change(lambda tx, s, d=database: dag.set_mounted(tx, s, d, True))
        for copy in COPIES:
            self._change(lambda tx, s, c=copy: dag.set_suspended(tx, s, *c, False))
            self._change(lambda tx, s, c=copy: dag.lag(tx, s, *c, 0, 0))
        self._run(self.lab.advance(4 * 3600))
        finals = {s.value for s in FINAL}
        assert all(row[0] in finals for row in self._read("SELECT status FROM moves"))
        assert not self._read("SELECT id FROM pairs WHERE queue IS NOT NULL")

    def _read(self, sql: str, *args: Any) -> list[Any]:
        return list(self.lab.store.read_sync(lambda c: c.execute(sql, args).fetchall()))

    @invariant()
    def nothing_in_transit_after_a_final_state(self) -> None:
        assert_nothing_in_transit_after_a_final_state(self.lab)

    @invariant()
    def no_message_lost_or_duplicated(self) -> None:
        servers = {s.name for s in self.lab.scenario.servers}
        report = self.lab.store.read_sync(lambda c: audit(c, servers))
        assert report.clean, report.problems
        assert report.accepted == self.sent
        for server, queue, locked in self._read(
                "SELECT p.server, p.queue, s.in_transit FROM pairs p LEFT JOIN store_mailboxes s"
                " ON s.server = p.server AND s.mailbox = p.mailbox WHERE p.queue IS NOT NULL"):
            offline = self.lab.store.read_sync(lambda c, at=server: databases.dismounted_at(c, at))
            assert queue.startswith("mapi:") and (locked == 1 or offline), (server, queue)


class DagNoneMachine(DagMachine):
    """The same with DataMoveReplicationConstraint None: failovers strand MRS requests."""

    constraint = "None"


for machine in (DagMachine, DagNoneMachine):
    machine.TestCase.settings = settings(
        max_examples=15, stateful_step_count=15, deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
test_dag_stateful = DagMachine.TestCase
test_dag_stateful_without_constraint = DagNoneMachine.TestCase
