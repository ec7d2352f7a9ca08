"""Hypothesis drives MRS move requests on a real exchange-2010 lab.

Whatever the requests do (suspend, resume, complete, fail, remove, transient
faults, bad items, RPC blocked and allowed between MRS and the other servers,
the clock, past the window after which a cut-off request fails with
FailedNetwork), no mailbox stays in transit once its request is final, every
status change is one the state machine allows, and no message is lost or
delivered twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from mailflow.actions.organization import set_rpc
from mailflow.errors import LabError
from mailflow.moves import dispatch as moves
from mailflow.moves.states import TRANSITIONS, MoveStatus
from stores import queue_ids
from stores.audit import audit
from stores.machine import InvalidTransition
from tests.conftest import build_lab
from tests.helpers import assert_nothing_in_transit_after_a_final_state, send

MAILBOXES = ["frank@contoso.test", "grace@contoso.test", "heidi@contoso.test",
             "ivan@contoso.test"]
SERVERS = ["EX2010-A", "EX2010-B", "EX2007-A", "EX2003-A"]
ACTIONS = {"complete": moves.complete, "fail": moves.fail, "suspend": moves.suspend,
           "resume": moves.resume, "remove": moves.remove}


class MrsMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="mailflow-mrs-"))
        self.loop = asyncio.new_event_loop()
        self.lab = build_lab(self.dir / "data", "exchange-2010")
        self.lab.http = None
        self._run(self.lab.start())
        self.sent = 0
        self.ids: list[str] = []

    def _run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def _write(self, fn: Any) -> Any:
        return self._run(self.lab.store.write(fn))

    def teardown(self) -> None:
        self._run(self.lab.stop())
        self.loop.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(mailbox=st.sampled_from(MAILBOXES), server=st.sampled_from(SERVERS),
          ready=st.booleans(), online=st.booleans(), bad=st.integers(0, 2),
          transient=st.integers(0, 2))
    def start(self, mailbox: str, server: str, ready: bool, online: bool, bad: int,
              transient: int) -> None:
        request = moves.MoveRequest(engine="mrs2010", suspend_when_ready=ready, online=online,
                                    bad_items=bad, bad_item_limit=1,
                                    fail_at=f"transient:{transient}")
        # Already there, or a request not yet removed: refused, and nothing changed.
        with contextlib.suppress(LabError):
            self.ids.append(self._write(
                lambda tx: moves.start(tx, self.lab.scenario, mailbox, server, request)))

    @precondition(lambda self: self.ids)
    @rule(data=st.data(), action=st.sampled_from(sorted(ACTIONS)))
    def act(self, data: st.DataObject, action: str) -> None:
        move_id = data.draw(st.sampled_from(self.ids))
        try:
            self._write(lambda tx: ACTIONS[action](tx, self.lab.scenario, move_id))
        except (LabError, InvalidTransition):
            return
        if action == "remove":
            self.ids.remove(move_id)
        self._run(self.lab.settle())

    @rule(via=st.sampled_from(SERVERS), to=st.sampled_from(MAILBOXES))
    def send_mail(self, via: str, to: str) -> None:
        self._run(send(self.lab, via, to))
        self.sent += 1
        self._run(self.lab.settle())

    @rule(other=st.sampled_from(SERVERS[1:]), allowed=st.booleans())
    def rpc(self, other: str, allowed: bool) -> None:
        """RPC between the site's only MRS instance (EX2010-A) and another server."""
        self._write(lambda tx: set_rpc(tx, self.lab.scenario, "EX2010-A", other, allowed))
        self._run(self.lab.settle())

    @rule(seconds=st.sampled_from([5, 30, 60, 600, 1900]))
    def advance(self, seconds: int) -> None:
        self._run(self.lab.advance(seconds))

    def _read(self, sql: str, *args: Any) -> list[Any]:
        return list(self.lab.store.read_sync(lambda c: c.execute(sql, args).fetchall()))

    @invariant()
    def nothing_in_transit_after_a_final_state(self) -> None:
        assert_nothing_in_transit_after_a_final_state(self.lab)

    @invariant()
    def history_follows_the_state_machine(self) -> None:
        for (history,) in self._read("SELECT history FROM moves"):
            statuses = [MoveStatus(h["status"]) for h in json.loads(history)]
            for before, after in itertools.pairwise(statuses):
                assert after == before or after in TRANSITIONS[before], statuses

    @invariant()
    def no_message_lost_or_duplicated(self) -> None:
        servers = {s.name for s in self.lab.scenario.servers}
        report = self.lab.store.read_sync(lambda c: audit(c, servers))
        assert report.clean, report.problems
        assert report.accepted == self.sent
        for queue, home_locked in self._read(
                "SELECT p.queue, s.in_transit FROM pairs p JOIN mailboxes m ON m.address ="
                " p.mailbox LEFT JOIN store_mailboxes s ON s.server = p.server AND s.mailbox ="
                " p.mailbox WHERE p.queue IS NOT NULL"):
            # Parked for a locked mailbox only: in a 2007/2010 delivery queue, or in 2003's
            # deferred queue for ivan@, whose home is the 2003 server.
            assert queue_ids.is_parking(queue) and home_locked == 1


MrsMachine.TestCase.settings = settings(
    max_examples=25, stateful_step_count=15, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_mrs_stateful = MrsMachine.TestCase
