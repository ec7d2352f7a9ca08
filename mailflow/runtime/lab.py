"""The running lab: a scenario and a data directory in, endpoints, scheduler and API out.

``Lab`` builds the organization from its scenario (seeding the store on first
start), opens one SMTP endpoint per server on its own event loop, runs the
scheduler that begins and completes moves, retries deferred delivery, and
sends delay notifications and expires old mail (``routing.dsn``) on the lab
clock, drives the SMTP transport between servers and to the outbound
smarthost (``smarthost="HOST:PORT"``), and serves the HTTP API. It is also
the router the endpoints hand their mail to.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from mailflow import moves
from mailflow.errors import Conflict
from mailflow.metrics import Metrics
from mailflow.runtime.datadir import LAB_FILE, ensure_token, lock
from mailflow.smtp.endpoint import Endpoint
from mailflow.smtp.session import Limits
from routing import categorizer, connectors, dsn, mta, queues
from routing.categorizer import Submission, Verdict
from routing.transport import OUTBOUND, Transport, due_links, host_port
from stores import db, directory
from stores import mailbox as stores_mailbox
from stores.clock import Clock
from stores.db import Fact, Store, Tx
from stores.topology import Scenario

log = logging.getLogger(__name__)

# How often (real seconds) the lab looks for due work when nothing wakes it.
TICK_SECONDS = 0.2
# How often (real seconds) the simulated time is saved for the next start.
CLOCK_SAVE_SECONDS = 5.0


def _seed(tx: Tx, scenario: Scenario) -> None:
    directory.seed(tx.conn, scenario)
    for spec in scenario.mailboxes:
        stores_mailbox.seed(tx.conn, spec.server, spec.address, spec.items,
                            scenario.defaults.item_size, tx.now)
    connectors.seed(tx.conn, scenario)
    db.set_meta(tx.conn, "scenario", scenario.source)
    db.set_meta(tx.conn, "scenario_name", scenario.name)


class Lab:
    def __init__(
        self,
        scenario: Scenario,
        data_dir: Path,
        *,
        speed: float = 1.0,
        host: str = "127.0.0.1",
        http: tuple[str, int] | None = ("127.0.0.1", 8025),
        smtp_port_override: int | None = None,
        registry: CollectorRegistry | None = None,
        smarthost: str | None = None,
    ) -> None:
        if smarthost:
            host_port(smarthost)  # HOST:PORT, or ValueError
            scenario = dataclasses.replace(scenario, smarthost=smarthost)
        self.scenario = scenario
        self.data_dir = data_dir
        self.speed = speed
        self.host = host
        self.http = http
        self.smtp_port_override = smtp_port_override
        self.registry = registry or CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.endpoints: dict[str, Endpoint] = {}
        self.http_url = ""
        self.token = ""
        self._known: frozenset[str] = frozenset()
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: Any = None
        self._lock_fd: int | None = None
        self._wake = asyncio.Event()
        self.store: Store
        self.clock: Clock
        self.transport: Transport

    # -- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lock_fd = lock(self.data_dir)
        if lock_fd is None:
            raise Conflict(f"another lab is running on {self.data_dir}")
        self._lock_fd = lock_fd
        self.token = ensure_token(self.data_dir)
        saved = _saved_clock(self.data_dir / "mailflow.db")
        self.clock = Clock(start=max(time.time(), saved), speed=self.speed)
        self.store = Store(self.data_dir / "mailflow.db", self.clock, on_commit=self._on_commit)
        stored = await self.store.read(lambda c: db.get_meta(c, "scenario"))
        if stored is None:
            await self.store.write(lambda tx: _seed(tx, self.scenario))
        elif stored != self.scenario.source:
            self.store.close()
            self._unlock()
            raise Conflict(
                f"{self.data_dir} holds a lab of another scenario; run it without --scenario,"
                " or give a new --data directory"
            )
        else:
            # Moves that were running when the last run ended: as their engines did.
            await self.store.write(lambda tx: moves.recover(tx, self.scenario))
            # Mail for other domains follows this run's smarthost, or waits for one.
            await self.store.write(lambda tx: categorizer.reroute_external(tx, self.scenario))
        self._known = await self.store.read(directory.smtp_addresses)
        self.metrics.watch_store(self.scenario, self.store.read_sync, self.clock.now)
        domain = self.scenario.domains[0]
        self.transport = Transport(self.store, self.scenario, self.endpoint_address, domain)
        limits = Limits.from_defaults(self.scenario.defaults)
        for server in self.scenario.servers:
            endpoint = Endpoint(server, self, limits, domain, self.metrics.rejected)
            port = server.smtp_port if self.smtp_port_override is None else self.smtp_port_override
            await endpoint.start(self.host, port)
            self.endpoints[server.name] = endpoint
        if self.http is not None:
            from mailflow.api import app as api

            self._runner, self.http_url = await api.serve(self, *self.http)
        self._write_lab_file()
        await self.transport.start()
        # Even a stopped clock has work due "now" (MTA transfers, retries forced by hand).
        self._tasks.append(asyncio.get_running_loop().create_task(self._tick_loop()))
        await self.run_due()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.transport.close()
        for endpoint in self.endpoints.values():
            await endpoint.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        with contextlib.suppress(Exception):
            await self.store.write(lambda tx: db.set_meta(tx.conn, "clock", repr(tx.now)))
        self.store.close()
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / LAB_FILE).unlink()
        self._unlock()

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _write_lab_file(self) -> None:
        info = {
            "pid": os.getpid(),
            "api": self.http_url,
            "scenario": self.scenario.name,
            "endpoints": {name: [e.host, e.port] for name, e in self.endpoints.items()},
        }
        # Written aside and renamed: the CLI and tests read it as soon as it exists.
        partial = self.data_dir / f"{LAB_FILE}.new"
        partial.write_text(json.dumps(info, indent=2) + "\n")
        partial.replace(self.data_dir / LAB_FILE)

    def endpoint_address(self, server: str) -> tuple[str, int]:
        endpoint = self.endpoints[server]
        return endpoint.host, endpoint.port

    # -- the router the SMTP endpoints hand mail to -------------------------------------------

    def valid_sender(self, address: str) -> bool:
        return categorizer.valid_sender(address)

    def check_recipient(self, address: str, peer: str) -> Verdict:
        return categorizer.check_recipient(self.scenario, self._known, address, peer)

    async def accept(self, submission: Submission) -> str:
        return await self.store.write(lambda tx: categorizer.accept(tx, self.scenario, submission))

    # -- time and scheduled work --------------------------------------------------------------

    def _on_commit(self, facts: list[Fact]) -> None:
        self.metrics.observe(facts)
        for fact in facts:
            if fact.kind == "link":
                self.transport.kick(fact.labels["server"], fact.labels["target"])
            elif fact.kind == "smarthost":
                self.transport.kick(fact.labels["server"], OUTBOUND)
            elif fact.kind in ("mta", "releasing"):
                self.wake()

    def wake(self) -> None:
        """Look for due work now rather than at the next tick."""
        self._wake.set()

    async def run_due(self) -> int:
        """Do every piece of scheduled work whose time has come; returns how many."""
        done = await self.store.write(self._due_writes)
        links = await self.store.read(lambda c: due_links(c, self.scenario, self.clock.now()))
        for server, target in links:
            self.transport.kick(server, target)
        return done + len(links)

    def _due_writes(self, tx: Tx) -> int:
        return (
            moves.run_due(tx, self.scenario)
            + categorizer.retry_due(tx, self.scenario)
            + categorizer.release_due(tx, self.scenario)
            + mta.release_due(tx, self.scenario)
            + mta.run_due(tx, self.scenario)
            + dsn.run_due(tx, self.scenario)
        )

    async def settle(self) -> None:
        """Run due work and wait for the transport until nothing more happens at this instant."""
        while True:
            await self.transport.idle()
            if not await self.run_due():
                await self.transport.idle()
                return

    async def advance(self, seconds: float) -> float:
        """Move the lab clock forward, stopping at every due time on the way, so that a
        queue retried every 10 minutes is retried six times in an hour, not once."""
        target = self.clock.now() + seconds
        while (due := await self.store.read(self._next_due)) and (
            due <= target
        ):
            self.clock.advance(due - self.clock.now())
            await self.settle()
        self.clock.advance(max(0.0, target - self.clock.now()))
        await self.store.write(lambda tx: db.set_meta(tx.conn, "clock", repr(tx.now)))
        await self.settle()
        return self.clock.now()

    def _next_due(self, conn: sqlite3.Connection) -> float | None:
        """The first time after now at which anything falls due, delay notices included."""
        now = self.clock.now()
        times = [t for t in (next_due(conn, self.scenario, now),
                              dsn.next_due(conn, self.scenario, now))
                 if t is not None]
        return min(times, default=None)

    async def _tick_loop(self) -> None:
        saved_at = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK_SECONDS)
            self._wake.clear()
            try:
                await self.run_due()
                if time.monotonic() - saved_at > CLOCK_SAVE_SECONDS:
                    saved_at = time.monotonic()
                    await self.store.write(lambda tx: db.set_meta(tx.conn, "clock", repr(tx.now)))
            except Exception:
                log.exception("scheduled work failed; trying again at the next tick")


def next_due(conn: sqlite3.Connection, scenario: Scenario, after: float) -> float | None:
    """The first time after ``after`` at which scheduled work falls due: one seek per
    non-empty queue and per move table index, never a read of every queued pair."""
    times = []
    for server, queue in queues.queue_keys(conn, (s.name for s in scenario.servers)):
        row = conn.execute(
            "SELECT next_attempt FROM pairs WHERE server = ? AND queue = ? AND next_attempt > ?"
            " AND frozen = 0 ORDER BY next_attempt LIMIT 1", (server, queue, after),
        ).fetchone()
        if row is not None:
            times.append(float(row[0]))
    row = conn.execute(
        "SELECT MIN(t) FROM (SELECT MIN(due_at) AS t FROM moves WHERE due_at > :after"
        " UNION ALL SELECT MIN(start_at) FROM moves WHERE status = 'Queued' AND start_at > :after"
        ")", {"after": after},
    ).fetchone()
    if row[0] is not None:
        times.append(float(row[0]))
    return min(times, default=None)


def _saved_clock(path: Path) -> float:
    """The simulated time a previous run of this data directory reached, or 0.

    Time never runs backwards, not even after kill -9: the last trace or event
    written bounds it from below when the periodic save is older.
    """
    if not path.exists():
        return 0.0
    conn = db.connect(path)
    try:
        db.migrate(conn)
        saved = float(db.get_meta(conn, "clock") or 0.0)
        for table in ("trace", "events"):
            last = conn.execute(f"SELECT sim_time FROM {table} ORDER BY id DESC LIMIT 1")
            saved = max([saved, *(row[0] for row in last)])
    finally:
        conn.close()
    return saved
