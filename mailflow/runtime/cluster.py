"""A lab process's seat in an organization spread over several processes (``--servers``).

In: the PostgreSQL URL they share, this process's id and servers, its endpoints' hop
addresses and its clock. Out: the claim of its servers (refused while another live process
holds one), whether it leads (the organization-wide work is the leader's), where the
other processes' servers take hop mail, the organization's clock followed at every tick,
and ``wait_settled``, the barrier an ``advance`` waits at so that every process has run
its work due at a time before the clock moves past it.

Every call on the store runs on one thread of its own (``stores.cluster.Membership`` holds
one connection), so a slow database never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from mailflow.errors import Conflict
from stores.backend import StoreError
from stores.clock import Clock
from stores.cluster import Address, ClockBase, Membership, Process

log = logging.getLogger(__name__)

T = TypeVar("T")

# A process silent for this many real seconds is taken for dead: its servers' addresses are
# forgotten and an advance no longer waits for it.
LIVE_SECONDS = 3.0
# How long (real seconds) a start waits for a server claimed by a process that just died
# (its connection may outlive it by a moment) before it refuses.
CLAIM_SECONDS = 10.0
# How long (real seconds) an advance waits for the other processes at one due time.
SETTLE_SECONDS = 30.0
# How often (real seconds) an advance looks at how far the others have settled.
SETTLE_POLL = 0.02


class Cluster:
    """This process in the lab: ``join`` at start, ``follow`` and ``beat`` at every tick,
    ``leave`` at a clean stop (a kill leaves it to PostgreSQL and the heartbeats)."""

    def __init__(self, url: str, process: str, servers: tuple[str, ...], clock: Clock) -> None:
        self.url = url
        self.process = process
        self.servers = servers
        self.clock = clock
        # The speed this process was started with: the organization's while it leads.
        self.speed = clock.speed
        self.leading = False
        self.addresses: dict[str, Address] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mailflow-cluster")
        self._seat: Membership | None = None
        self._row: Process | None = None
        self._own: list[Address] = []

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    @property
    def seat(self) -> Membership:
        assert self._seat is not None, "join first"
        return self._seat

    async def join(self) -> None:
        """Claim this process's servers and take up the organization's clock; Conflict when
        another live process runs one of them."""
        self._seat = await self._call(Membership, self.url, self.process)
        deadline = time.monotonic() + CLAIM_SECONDS
        while taken := await self._call(self.seat.claim, self.servers):
            if time.monotonic() > deadline:
                await self.leave()
                raise Conflict(f"{', '.join(taken)} already run by another process of this lab")
            await asyncio.sleep(0.2)
        # A process joining an organization takes up its clock as it stands, even when its
        # own would be ahead (a stopped clock started later).
        base = await self._call(self.seat.clock)
        if base is not None:
            self.clock.set(base.at(time.time()), base.speed)

    async def register(self, api: str, own: list[Address]) -> None:
        """Publish this process (its API) and where its servers take hop mail."""
        now = time.time()
        self._own = own
        self._row = Process(self.process, os.getpid(), socket.gethostname(), self.servers,
                            api, False, now, self.clock.now())
        await self._call(self.seat.register, self._row, own)

    async def follow(self) -> bool:
        """Follow the organization's clock, learn where the others' servers are, and try to
        lead; True when this process has just begun to lead. A broken connection is
        opened again and the servers claimed again."""
        try:
            await self._follow()
            await self.learn_addresses()
            was_leading = self.leading
            self.leading = await self._call(self.seat.lead)
        except StoreError as exc:
            await self._lost(exc)
            return False
        if self.leading and not was_leading:
            # The clock goes on from where the organization's was, at this process's speed.
            await self.set_clock(self.clock.now(), self.speed)
            return True
        return False

    async def learn_addresses(self) -> None:
        """Where the live processes' servers take mail, read now."""
        self.addresses = await self._call(self.seat.addresses, time.time() - LIVE_SECONDS)

    async def beat(self, settled: float | None) -> None:
        """This process is alive (and has done its work due by simulated time ``settled``)."""
        try:
            await self._call(self.seat.beat, time.time(), settled)
        except StoreError as exc:
            await self._lost(exc)

    async def _lost(self, exc: StoreError) -> None:
        log.warning("cluster: %s; connecting again", exc)
        self.leading = False
        with contextlib.suppress(StoreError):  # the next tick tries again
            await self._call(self._rejoin)

    def _rejoin(self) -> None:
        self.seat.reconnect()
        if self.seat.claim(self.servers):
            raise StoreError("this process's servers were claimed by another while it was cut"
                             " off")
        if self._row is not None:
            self.seat.register(self._row, self._own)

    async def _follow(self) -> None:
        base = await self._call(self.seat.clock)
        if base is not None:
            self.clock.follow(base.at(time.time()), base.speed)

    async def set_clock(self, sim: float, speed: float) -> None:
        """Set the organization's clock (an advance, or a new leader); the last one wins."""
        self.clock.follow(sim, speed)
        await self._call(self.seat.set_clock, ClockBase(sim, time.time(), speed))

    async def live(self) -> list[Process]:
        return await self._call(self.seat.live, time.time() - LIVE_SECONDS)

    async def wait_settled(self, at: float) -> None:
        """Wait until every other live process has run its work due by simulated time
        ``at`` (or ``SETTLE_SECONDS`` passed: a process stuck draining is not waited for)."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while time.monotonic() < deadline:
            behind = [p for p in await self.live() if p.id != self.process and p.settled < at]
            if not behind:
                return
            await asyncio.sleep(SETTLE_POLL)
        log.warning("cluster: advanced past %.0f without every process settled", at)

    async def leave(self) -> None:
        if self._seat is not None:
            try:
                await self._call(self._seat.leave)
            except StoreError as exc:
                log.warning("cluster: leaving: %s", exc)
            self._seat = None
        self._pool.shutdown(wait=True)

