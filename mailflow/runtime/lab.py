"""The running lab: a scenario and a data directory in, endpoints, scheduler and API out.

``Lab`` builds the organization from its scenario (seeding the store on first
start), opens one SMTP endpoint per server on its own event loop, runs the
scheduler that begins and completes moves, retries deferred delivery, and
sends delay notifications and expires old mail (``routing.dsn``) on the lab
clock, drives the SMTP transport between servers and to the outbound
smarthost (``smarthost="HOST:PORT"``), and serves the HTTP API (answering only
to IP addresses, localhost and ``http_names``; reads too need the token with
``token_for_reads``). It is also the router the endpoints hand their mail to.
The scheduled work itself is ``mailflow.runtime.scheduler``'s. A data directory
the lab cannot write, or whose token is unusable, stops ``start`` with a
``LabError`` of one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from mailflow.api.app import serve
from mailflow.errors import Conflict, LabError
from mailflow.metrics import Metrics
from mailflow.runtime import datadir
from mailflow.runtime.changes import Changes
from mailflow.runtime.cluster import Cluster
from mailflow.runtime.datadir import LAB_FILE, ensure_token, lock
from mailflow.runtime.scheduler import Scheduler, recover
from mailflow.smtp.endpoint import Endpoint
from mailflow.smtp.faults import FaultBook, FaultGate
from mailflow.smtp.session import Limits
from mailflow.smtp.tls import server_context
from routing import adc, categorizer
from routing.categorizer import Submission, Verdict
from routing.sender import LinkError
from routing.transport import OUTBOUND, Transport, host_port
from stores import backends, connectors, databases, directory, faults, meta
from stores import mailbox as stores_mailbox
from stores.backend import Backend, Fact, StoreError, Tx
from stores.clock import Clock
from stores.cluster import Address, Process
from stores.topology import Scenario


def _seed_once(tx: Tx, scenario: Scenario) -> str | None:
    """The scenario the store was seeded from, or None after seeding it now."""
    stored = meta.get(tx, "scenario")
    if stored is None:
        _seed(tx, scenario)
    return stored


def _seed(tx: Tx, scenario: Scenario) -> None:
    directory.seed(tx, scenario)
    databases.seed(tx, scenario)
    adc.seed(tx, scenario)
    for spec in scenario.mailboxes:
        stores_mailbox.seed(tx, spec.server, spec.address, spec.items,
                            scenario.defaults.item_size, tx.now)
    connectors.seed(tx, scenario)
    meta.put(tx, "scenario", scenario.source)
    meta.put(tx, "scenario_name", scenario.name)
    for rule in scenario.faults:
        faults.add(tx, rule)


class Lab:
    """One running lab: ``start`` opens everything, ``stop`` closes it in reverse order."""

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
        token_for_reads: bool = False,
        http_names: tuple[str, ...] = (),
        store: str | None = None,
        servers: tuple[str, ...] | None = None,
    ) -> None:
        if smarthost:
            host_port(smarthost)  # HOST:PORT, or ValueError
            scenario = dataclasses.replace(scenario, smarthost=smarthost)
        self.scenario = scenario
        self.data_dir = data_dir
        self.speed = speed
        self.host = host
        self.http = http
        self.token_for_reads = token_for_reads
        self.http_names = frozenset(name.lower().rstrip(".") for name in http_names)
        self.smtp_port_override = smtp_port_override
        # Where the store is: the data directory's SQLite file, or a PostgreSQL URL.
        self.store_location = backends.location(data_dir, store)
        shared = backends.is_shared(self.store_location)
        if servers is not None and not shared:
            raise ValueError("only a lab on PostgreSQL (--store postgresql://...) runs in"
                             " several processes")
        # The servers this process runs (in a lab spread over processes, some of them).
        self.servers = tuple(scenario.server(name).name for name in servers or
                             (s.name for s in scenario.servers))
        self.cluster: Cluster | None = None
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
        # Bumped at every commit while serving: what waits for mail or redraws waits on it.
        self.changes = Changes()
        # Until the endpoints and the transport are up, commits do not kick links: the
        # first run_due after start finds every link with mail due.
        self._serving = False
        self.store: Backend
        self.clock: Clock
        self.transport: Transport
        self.scheduler: Scheduler
        self.faults: FaultBook

    # -- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        datadir.prepare(self.data_dir)
        lock_fd = lock(self.data_dir)
        if lock_fd is None:
            raise Conflict(f"another lab is running on {self.data_dir}")
        self._lock_fd = lock_fd
        try:
            await self._open_store()
        except BaseException:
            self._unlock()
            raise
        self._known = await self.store.read(directory.smtp_addresses)
        self.faults = FaultBook(self.store)
        await self.faults.load()
        # Each process exports its own servers' series, the leader the organization's.
        self.metrics.watch_store(self.scenario, self.store.read_sync, self.clock.now,
                                 servers=self.servers, leading=self._leading)
        domain = self.scenario.domains[0]
        # The hop goes to each endpoint's own hop port, never to the clients' slots.
        self.transport = Transport(self.store, self.scenario, self._hop_address, domain)
        limits = Limits.from_defaults(self.scenario.defaults)
        for server in (self.scenario.server(name) for name in self.servers):
            hostname = f"{server.name}.{domain}"
            tls = server_context(server.security, self.data_dir, server.name, hostname)
            endpoint = Endpoint(server, self, limits, domain, self.metrics.rejected, tls,
                                self.scenario.logins, FaultGate(self.faults, server.name))
            port = server.smtp_port if self.smtp_port_override is None else self.smtp_port_override
            await endpoint.start(self.host, port, hop_beyond_loopback=self.cluster is not None)
            self.endpoints[server.name] = endpoint
        if self.http is not None:
            self._runner, self.http_url = await serve(self, *self.http)
        if self.cluster is not None:
            # Published before lab.json says the lab is up: the others can hop here then.
            await self.cluster.register(self.http_url, [
                Address(name, self.cluster.process,
                        (self.scenario.server(name).host or e.host, e.hop_address[1]),
                        (e.host, e.port)) for name, e in self.endpoints.items()])
        self._write_lab_file()
        await self.transport.start()
        self._serving = True
        self.scheduler = Scheduler(self.store, self.scenario, self.clock, self.transport,
                                   self._wake, failed=self.metrics.scheduler_failed,
                                   servers=self.servers, cluster=self.cluster)
        # Even a stopped clock has work due "now" (MTA transfers, retries forced by hand).
        self._tasks.append(asyncio.get_running_loop().create_task(self.scheduler.tick_loop()))
        await self.scheduler.run_due()

    async def _open_store(self) -> None:
        """Check the token, open (or seed) the store and prove it takes a write; the store
        is closed again if it does not."""
        self.token = ensure_token(self.data_dir)
        where = self.store_location
        shown = backends.describe(where)
        if isinstance(where, Path):
            datadir.private(where)
        try:
            saved = backends.saved_clock(where)
            self.clock = Clock(start=max(time.time(), saved), speed=self.speed)
            self.store = backends.open_store(where, self.clock, on_commit=self._on_commit)
        except StoreError as exc:  # not a database, or one this user cannot open
            raise LabError(f"cannot open {shown}: {exc}") from None
        try:
            # A read-only file or a full disk fails here, not at the first 250.
            await self.store.write(meta.save_clock)
            if isinstance(where, str):
                self.cluster = Cluster(where, f"{socket.gethostname()}:{self.data_dir.resolve()}",
                                       self.servers, self.clock)
                await self.cluster.join()
            await self._load()
        except StoreError as exc:
            await self._close_store()
            raise LabError(f"cannot write {shown}: {exc}") from None
        except BaseException:
            await self._close_store()
            raise

    async def _close_store(self) -> None:
        if self.cluster is not None:
            await self.cluster.leave()
        self.store.close()

    async def _load(self) -> None:
        """Seed a new store, or pick up where the last run of this scenario ended (in a lab
        of several processes, its leader does, when it begins to lead)."""
        # Looked at and seeded in one write: of processes starting together, one seeds.
        stored = await self.store.write(lambda tx: _seed_once(tx, self.scenario))
        if stored is None and self.cluster is None:
            return
        if stored not in (None, self.scenario.source):
            held, other = ((self.data_dir, "--data directory") if self.cluster is None else
                           (backends.describe(self.store_location), "--store database"))
            raise Conflict(f"{held} holds a lab of another scenario; run it without"
                           f" --scenario, or give a new {other}")
        # In a lab of several processes, the leader picks it up; this one, if it leads now.
        # Before the API and the endpoints open: a move asked for a moment later must not be
        # taken for one the last run left.
        if self.cluster is None or await self.cluster.follow():
            await recover(self.store, self.scenario)

    async def stop(self) -> None:
        self.changes.close()  # requests waiting for mail answer now, not at their timeout
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
            await self.store.write(meta.save_clock)
        await self._close_store()
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
        with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(json.dumps(info, indent=2) + "\n")
        partial.replace(self.data_dir / LAB_FILE)

    def endpoint_address(self, server: str) -> tuple[str, int]:
        endpoint = self.endpoints[server]
        return endpoint.host, endpoint.port

    async def _hop_address(self, server: str) -> tuple[str, int]:
        """Where the transport sends to ``server``: its endpoint's hop port, in this process
        or in the one of the lab that runs it (looked up again when not known yet: that
        process may have started since the last tick)."""
        if server in self.endpoints:
            return self.endpoints[server].hop_address
        if self.cluster is not None and server not in self.cluster.addresses:
            try:
                await self.cluster.learn_addresses()
            except StoreError as exc:
                raise LinkError(f"cannot look up where {server} runs: {exc}", 0) from None
        address = self.cluster.addresses.get(server) if self.cluster else None
        if address is None:
            raise LinkError(f"{server} is not running in any process of this lab", 0)
        return address.hop

    def _leading(self) -> bool:
        return self.cluster is None or self.cluster.leading

    async def processes(self) -> list[dict[str, Any]]:
        """The lab's live processes (``GET /api/v1/processes``)."""
        if self.cluster is None:
            return [Process("", os.getpid(), socket.gethostname(), self.servers, self.http_url,
                            True, time.time(), self.clock.now()).doc()]
        return [p.doc() for p in await self.cluster.live()]

    def endpoint_addresses(self) -> dict[str, tuple[str, int]]:
        """Where each running server of the lab takes clients' mail, whichever process
        runs it."""
        found = {name: a.smtp for name, a in (self.cluster.addresses if self.cluster
                                              else {}).items()}
        found.update((name, self.endpoint_address(name)) for name in self.endpoints)
        return {s.name: found[s.name] for s in self.scenario.servers if s.name in found}

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
        if not self._serving:
            return
        self.changes.bump()
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

    async def settle(self) -> None:
        """Run due work and wait for the transport until nothing more happens at this instant."""
        await self.scheduler.settle()

    async def advance(self, seconds: float) -> float:
        """Move the lab clock forward, stopping at every due time on the way."""
        return await self.scheduler.advance(seconds)
