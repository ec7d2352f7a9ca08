"""Hypothesis drives a mixed-mode lab (issue 17): moves within and across sites, mail from
5.5 and 2003 senders, mail to the group sales@ (expanded by the server that resolves it),
ADC runs, stops and starts, 5.5-side edits and the lab clock.

Whatever the order, every accepted recipient ends in exactly one place (delivered, queued,
NDR'd, or expanded: a group into its members), nothing is delivered twice, every group
mail was expanded once, and the audit is clean.
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

from mailflow.actions import directory as operations
from mailflow.moves import dispatch as moves
from stores.audit import audit
from tests.conftest import build_lab
from tests.helpers import send

MAILBOXES = ["alice@contoso.test", "dave@contoso.test", "erin@contoso.test",
             "user003@contoso.test"]
SENDERS = ["user007@contoso.test", "carol@contoso.test"]  # on EX55-LON, on EX2003-B
SERVERS = ["EX2003-A", "EX2003-B", "EX55-LON", "EX2000-LON"]
GROUP = "sales@contoso.test"  # alice, dave and user003 (mixed-2003.toml)


class DirectoryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="mailflow-directory-"))
        self.loop = asyncio.new_event_loop()
        self.lab = build_lab(self.dir / "data")
        self.lab.http = None
        self._run(self.lab.start())
        self.sent = 0
        self.to_group = 0
        self.active: dict[str, str] = {}

    def _run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def _write(self, fn: Any) -> Any:
        result = self._run(self.lab.store.write(lambda tx: fn(tx, self.lab.scenario)))
        self._run(self.lab.settle())
        return result

    def teardown(self) -> None:
        self._run(self.lab.stop())
        self.loop.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(via=st.sampled_from(SERVERS), sender=st.sampled_from(SENDERS),
          to=st.lists(st.sampled_from(MAILBOXES), min_size=1, max_size=3, unique=True))
    def send_mail(self, via: str, sender: str, to: list[str]) -> None:
        assert self._run(send(self.lab, via, to, sender=sender)).startswith("2.6.0")
        self.sent += len(to)
        self._run(self.lab.settle())

    @rule(via=st.sampled_from(SERVERS), sender=st.sampled_from(SENDERS),
          also=st.lists(st.sampled_from(MAILBOXES), max_size=2, unique=True))
    def send_to_group(self, via: str, sender: str, also: list[str]) -> None:
        assert self._run(send(self.lab, via, [GROUP, *also], sender=sender)).startswith("2.6.0")
        self.to_group += 1
        self._run(self.lab.settle())

    @rule(mailbox=st.sampled_from(MAILBOXES), server=st.sampled_from(SERVERS),
          complete=st.booleans())
    def move(self, mailbox: str, server: str, complete: bool) -> None:
        if mailbox in self.active:
            ident = self.active.pop(mailbox)
            action = moves.complete if complete else moves.fail
            self._write(lambda tx, s: action(tx, s, ident))
            return
        home = self.lab.store.read_sync(lambda c: operations.show(c, self.lab.scenario,
                                                                  mailbox))["replicas"][0]
        if home["server"] != server:
            self.active[mailbox] = self._write(lambda tx, s: moves.start(
                tx, s, mailbox, server, moves.MoveRequest(hold=True)))

    @rule(mailbox=st.sampled_from(MAILBOXES), site=st.sampled_from(["LONDON", "REDMOND"]))
    def edit(self, mailbox: str, site: str) -> None:
        try:
            self._write(lambda tx, s: operations.edit(tx, s, mailbox, site, {"info": "x"}))
        except Exception as exc:  # no present object there: refused, nothing changed
            assert "no present object" in str(exc)

    @rule(agreement=st.sampled_from([None, "LONDON CA", "REDMOND CA"]))
    def adc_run(self, agreement: str | None) -> None:
        self._write(lambda tx, s: operations.run(tx, s, agreement))

    @rule(running=st.booleans())
    def adc_service(self, running: bool) -> None:
        self._write(operations.start if running else operations.stop)

    @precondition(lambda self: not self.active)
    @rule(minutes=st.integers(10, 600))
    def advance(self, minutes: int) -> None:
        self._run(self.lab.advance(minutes * 60))

    @invariant()
    def every_recipient_in_one_place(self) -> None:
        servers = {s.name for s in self.lab.scenario.servers}
        report = self.lab.store.read_sync(lambda c: audit(c, servers))
        assert report.clean, report.problems
        assert report.expanded == self.to_group
        assert report.accepted == sum(report.queued.values()) + report.delivered \
            + report.relayed + report.ndr + report.deleted + report.expanded
        delivered = self.lab.store.read_sync(
            lambda c: c.execute("SELECT COUNT(*), COUNT(DISTINCT pair) FROM items"
                                " WHERE pair IS NOT NULL").fetchone())
        assert delivered[0] == delivered[1] == report.delivered


DirectoryMachine.TestCase.settings = settings(
    max_examples=20, stateful_step_count=12, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_directory_stateful = DirectoryMachine.TestCase
