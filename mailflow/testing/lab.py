"""A lab for other people's test suites: a scenario in, a running lab with helpers out.

``TestLab.start`` runs a whole lab (``mailflow.runtime.lab.Lab``: every endpoint and the
API on port 0 of 127.0.0.1, its data in a directory of the caller's, a manual clock
unless a ``speed`` is given) on an event loop of its own, in a thread, so that a test,
synchronous or asynchronous, and the application it tests can use the lab over its real
sockets while the test's own code blocks. The helpers are what a tester does: send mail
(aiosmtplib), wait for it (``GET /api/v1/messages/wait``: no sleeping), move the clock,
start and complete moves, read queues, add fault rules. ``stop`` stops the lab and its
thread. docs/testing-your-app.md shows a whole test.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import threading
import urllib.parse
from collections.abc import Coroutine, Mapping
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import aiosmtplib

from mailflow import scenarios
from mailflow.cli.client import Client, CliError
from mailflow.runtime.lab import Lab
from stores.topology import Scenario

T = TypeVar("T")
# Real seconds any one call on the lab may take before the test is told it hangs.
CALL_TIMEOUT = 120.0


class LabTimeout(AssertionError):
    """The mail waited for did not come within the timeout (the wait route's 408)."""


def scenario_of(scenario: str | Scenario, defaults: Mapping[str, Any] | None) -> Scenario:
    """A built-in scenario by name, a scenario file by path, or a Scenario; with some
    ``defaults`` replaced (``stores.topology.Defaults`` fields)."""
    chosen = scenarios.load(scenario) if isinstance(scenario, str) else scenario
    if defaults:
        chosen = dataclasses.replace(
            chosen, defaults=dataclasses.replace(chosen.defaults, **defaults))
    return chosen


class TestLab:
    """One running lab and what a test does with it. Build it with :meth:`start`."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, lab: Lab, loop: asyncio.AbstractEventLoop, thread: threading.Thread
                 ) -> None:
        self.lab = lab
        self._loop = loop
        self._thread = thread
        self._client = Client(argparse.Namespace(data=str(lab.data_dir), api=lab.http_url))

    @classmethod
    def start(cls, data: Path, scenario: str | Scenario = "mixed-2003", *, speed: float = 0.0,
              defaults: Mapping[str, Any] | None = None) -> TestLab:
        """Start a lab of ``scenario`` on ``data`` (a directory of its own, e.g. tmp_path)."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="mailflow-lab", daemon=True)
        thread.start()
        lab = Lab(scenario_of(scenario, defaults), data, speed=speed, http=("127.0.0.1", 0),
                  smtp_port_override=0)
        try:
            asyncio.run_coroutine_threadsafe(lab.start(), loop).result(CALL_TIMEOUT)
        except BaseException:
            _end(loop, thread)
            raise
        return cls(lab, loop, thread)

    def stop(self) -> None:
        """Stop the lab (closing its sockets and store), then its loop and thread."""
        try:
            self._run(self.lab.stop())
        finally:
            _end(self._loop, self._thread)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(CALL_TIMEOUT)

    # -- where the application under test sends --------------------------------------------

    @property
    def api_url(self) -> str:
        return self.lab.http_url

    @property
    def token(self) -> str:
        return self.lab.token

    def smtp_address(self, server: str | None = None) -> tuple[str, int]:
        """Host and port of a server's SMTP endpoint (the scenario's first by default)."""
        return self.lab.endpoint_address(server or self.lab.scenario.servers[0].name)

    # -- the helpers -----------------------------------------------------------------------

    def api(self, method: str, path: str, body: dict[str, Any] | None = None,
            timeout: float = 60.0) -> Any:
        """One call of the lab's API (the token sent); an error answer raises CliError."""
        return self._client.call(method, path, body, timeout=timeout)

    def send(self, to: str | list[str], *, subject: str = "test",
             sender: str = "tester@example.net", body: str = "Hello.\n",
             server: str | None = None) -> str:
        """Send one message over SMTP; returns the queue id of the 250 (a refusal raises
        aiosmtplib's exception)."""
        rcpts = [to] if isinstance(to, str) else to
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = sender, ", ".join(rcpts), subject
        message.set_content(body)
        host, port = self.smtp_address(server)
        _, reply = self._run(aiosmtplib.send(message, hostname=host, port=port,
                                             start_tls=False, recipients=rcpts))
        return reply.split("<", 1)[1].split(">", 1)[0]

    def wait(self, mailbox: str, *, subject: str | None = None, sender: str | None = None,
             count: int = 1, state: str = "delivered", timeout: float = 30.0
             ) -> list[dict[str, Any]]:
        """The messages for ``mailbox`` once ``count`` of them are delivered (or, with
        state="queued", accepted); LabTimeout after ``timeout`` real seconds."""
        query: dict[str, Any] = {"mailbox": mailbox, "count": count, "state": state,
                                 "timeout": timeout}
        query.update({k: v for k, v in (("subject", subject), ("from", sender)) if v})
        try:
            rows: list[dict[str, Any]] = self.api(
                "GET", f"/api/v1/messages/wait?{urllib.parse.urlencode(query)}",
                timeout=timeout + 30)
        except CliError as exc:
            if str(exc).startswith("408:"):
                raise LabTimeout(f"no {count} message(s) for {mailbox} within {timeout:g}s"
                                 f" ({state})") from None
            raise
        return rows

    def advance(self, seconds: float) -> float:
        """Move the lab clock on, running everything due on the way; the new time."""
        return self._run(self.lab.advance(seconds))

    def settle(self) -> None:
        """Run what is due now and let the lab's own transport finish."""
        self._run(self.lab.settle())

    def start_move(self, mailbox: str, target: str, **options: Any) -> dict[str, Any]:
        """Start a move of ``mailbox`` to server ``target`` (``hold=True`` keeps it in
        transit until :meth:`complete_move`); the move as the API shows it."""
        move: dict[str, Any] = self.api("POST", "/api/v1/moves",
                                        {"mailbox": mailbox, "target": target, **options})
        return move

    def complete_move(self, move_id: str) -> dict[str, Any]:
        move: dict[str, Any] = self.api("POST", f"/api/v1/moves/{move_id}/complete")
        return move

    def fail_move(self, move_id: str) -> dict[str, Any]:
        move: dict[str, Any] = self.api("POST", f"/api/v1/moves/{move_id}/fail")
        return move

    def queues(self) -> list[dict[str, Any]]:
        """Every queue of every server, as ``GET /api/v1/queues`` lists them."""
        rows: list[dict[str, Any]] = self.api("GET", "/api/v1/queues")
        return rows

    def queue_depth(self, server: str, queue: str) -> int:
        """Recipients waiting in one queue (0 for a queue not listed)."""
        return sum(int(row["message_count"]) for row in self.queues()
                   if row["server"] == server and row["queue"] == queue)

    def add_fault(self, **rule: Any) -> dict[str, Any]:
        """Add a fault rule (docs/faults.md); the rule with its id."""
        doc: dict[str, Any] = self.api("POST", "/api/v1/faults", rule)
        return doc

    def audit(self) -> dict[str, Any]:
        """The lab's audit: ``clean`` is true when nothing accepted was lost."""
        report: dict[str, Any] = self.api("GET", "/api/v1/audit")
        return report


def _end(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    loop.call_soon_threadsafe(loop.stop)
    thread.join(CALL_TIMEOUT)
    loop.close()
