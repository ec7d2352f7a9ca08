"""Hypothesis drives a real lab: sends over SMTP, moves started, completed and failed, restarts.

Whatever the sequence, the audit holds, nothing is delivered twice, and the
only mail still queued is mail parked for a mailbox that is in transit, or
mail stuck in an MTA RPC queue to a server it has no RPC path to (seed 003), or
an NDR to the external sender waiting for a smarthost (a 5.5 server's, issue 17).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from mailflow.moves import dispatch as moves
from mailflow.runtime.lab import Lab
from routing import connectors
from stores import connectors as stored_connectors
from stores.audit import audit
from tests.conftest import build_lab
from tests.helpers import send

MAILBOXES = ["alice@contoso.test", "carol@contoso.test", "dave@contoso.test",
             "erin@contoso.test"]
SERVERS = ["EX2003-A", "EX2003-B", "EX55-LON", "EX2000-LON"]


class LabMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="mailflow-stateful-"))
        self.loop = asyncio.new_event_loop()
        self.lab = self._start()
        self.sent = 0
        self.active: dict[str, str] = {}  # mailbox -> id of its open move

    def _run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def _start(self) -> Lab:
        lab = build_lab(self.dir / "data")
        lab.http = None
        self._run(lab.start())
        return lab

    def teardown(self) -> None:
        self._run(self.lab.stop())
        self.loop.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(via=st.sampled_from(SERVERS), to=st.lists(st.sampled_from(MAILBOXES), min_size=1,
                                                     max_size=3, unique=True))
    def send_mail(self, via: str, to: list[str]) -> None:
        reply = self._run(send(self.lab, via, to))
        assert reply.startswith("2.6.0")
        self.sent += len(to)
        self._run(self.lab.settle())

    @rule(mailbox=st.sampled_from(MAILBOXES), server=st.sampled_from(SERVERS))
    def start_move(self, mailbox: str, server: str) -> None:
        home = self._home(mailbox)
        if mailbox in self.active or home == server:
            return
        self.active[mailbox] = self._run(self.lab.store.write(
            lambda tx: moves.start(tx, self.lab.scenario, mailbox, server,
                                   moves.MoveRequest(hold=True))))

    @precondition(lambda self: self.active)
    @rule(data=st.data(), complete=st.booleans())
    def finish_move(self, data: st.DataObject, complete: bool) -> None:
        mailbox = data.draw(st.sampled_from(sorted(self.active)))
        move_id = self.active.pop(mailbox)
        action = moves.complete if complete else moves.fail
        self._run(self.lab.store.write(lambda tx: action(tx, self.lab.scenario, move_id)))
        self._run(self.lab.settle())

    @rule()
    def restart(self) -> None:
        self._run(self.lab.stop())
        self.lab = self._start()
        self._run(self.lab.settle())
        # A wizard move caught mid-copy rolls back at start-up; held ones survive.
        for mailbox, move_id in list(self.active.items()):
            status = self.lab.store.read_sync(lambda c, m=move_id: c.execute(
                "SELECT status FROM moves WHERE id=?", (m,)).fetchone()[0])
            if status == "Failed":
                del self.active[mailbox]

    @rule()
    def add_site_connector(self) -> None:
        self._run(self.lab.store.write(
            lambda tx: stored_connectors.add(tx, "site", "REDMOND", "LONDON", 1, "fix")))
        self._run(self.lab.advance(self.lab.scenario.defaults.mta_open_interval_seconds))

    # At most 12 steps of 50 minutes: short of the 12-hour delay notice, which would send
    # a DSN to the external sender and park it in `unreachable`.
    @rule(minutes=st.integers(1, 50))
    def advance(self, minutes: int) -> None:
        self._run(self.lab.advance(minutes * 60))

    def _home(self, mailbox: str) -> str:
        row = self.lab.store.read_sync(
            lambda c: c.execute("SELECT server FROM mailboxes WHERE address=?", (mailbox,))
            .fetchone())
        return str(row[0])

    @invariant()
    def audit_holds_and_only_in_transit_mail_waits(self) -> None:
        servers = {s.name for s in self.lab.scenario.servers}
        report = self.lab.store.read_sync(lambda c: audit(c, servers))
        assert report.clean, report.problems
        assert report.accepted == sum(report.queued.values()) + report.delivered \
            + report.relayed + report.ndr + report.deleted + report.expanded
        dsns = self.lab.store.read_sync(lambda c: c.execute(
            "SELECT COUNT(*) FROM pairs p JOIN messages m ON m.id = p.message"
            " WHERE m.dsn_of IS NOT NULL").fetchone()[0])
        assert report.accepted == self.sent + dsns  # NDRs of 5.5 servers (issue 17)
        waiting = self.lab.store.read_sync(lambda c: c.execute(
            "SELECT p.server, p.queue, p.mailbox, s.in_transit, m.dsn_of FROM pairs p"
            " LEFT JOIN store_mailboxes s ON s.server = p.server AND s.mailbox = p.mailbox"
            " JOIN messages m ON m.id = p.message WHERE p.queue IS NOT NULL"
        ).fetchall())
        for server, queue, mailbox, in_transit, dsn_of in waiting:
            if queue == "unreachable" and dsn_of is not None:
                continue  # a 5.5 server's NDR (KB 841659 window) to the external sender
            if queue.startswith("mta:"):
                at, target = (self.lab.scenario.server(n) for n in (server, queue[4:]))
                assert not self.lab.store.read_sync(
                    lambda c, a=at, t=target: connectors.rpc_possible(c, a, t))
            else:
                assert queue in ("deferred", "holding") and in_transit == 1
                assert mailbox in self.active
        delivered = self.lab.store.read_sync(
            lambda c: c.execute("SELECT COUNT(*), COUNT(DISTINCT pair) FROM items"
                                " WHERE pair IS NOT NULL").fetchone())
        assert delivered[0] == delivered[1] == report.delivered


LabMachine.TestCase.settings = settings(
    max_examples=25, stateful_step_count=12, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_lab_stateful = LabMachine.TestCase
