"""The lab's scheduler: the clock and the store in, scheduled work done out.

``Scheduler`` runs the work whose time has come (moves begun and completed,
deferred delivery retried, mail released, MTA transfers, delay notices and
expiry from ``routing.dsn``) and kicks the SMTP transport for due links. It
advances the simulated clock stopping at every due time on the way, settles
until nothing more happens at an instant, and ticks in the background when
nothing wakes it.

Each piece of due work runs in a write of its own, so a piece that fails (a
value the store cannot take, a bug) undoes only itself: it is logged, counted
(``failed(work)``, the ``mailflow_scheduler_errors_total{work}`` metric),
evented (mailflow event 1020, once per run of failures) and tried again at the
next tick, while the other pieces go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from functools import partial

from mailflow.moves import dispatch as moves
from mailflow.runtime.cluster import Cluster
from routing import adc, categorizer, expiry, mta
from routing.transport import Transport, due_links
from stores import meta, queue_state
from stores import moves as stored_moves
from stores.backend import Backend, Read, Tx
from stores.clock import Clock
from stores.topology import Scenario

log = logging.getLogger(__name__)

# How often (real seconds) the lab looks for due work when nothing wakes it.
TICK_SECONDS = 0.2
# How often (real seconds) the simulated time is saved for the next start.
CLOCK_SAVE_SECONDS = 5.0
# The mailflow event of a piece of scheduled work that failed.
WORK_FAILED_EVENT = 1020

# The pieces of scheduled work, in the order they run; each one write of its own. The
# organization's (True) run in its leader only; the others in the process that runs each
# server, for its servers (``servers=``).
WORK: tuple[tuple[str, Callable[..., int], bool], ...] = (
    ("moves", moves.run_due, True),
    ("retries", categorizer.retry_due, False),
    ("releases", categorizer.release_due, True),
    ("holding", mta.release_due, True),
    ("mta", mta.run_due, False),
    ("expiry", expiry.run_due, True),
    ("adc", adc.run_due, True),
)


class Scheduler:
    """Scheduled work of one running lab; ``wake`` is set by whoever made work due now.

    ``servers`` are the servers this process runs (all of them but in a lab spread over
    several processes, ``mailflow.runtime.cluster``); ``cluster`` is that lab's seat, whose
    leader alone does the organization's work."""

    def __init__(self, store: Backend, scenario: Scenario, clock: Clock, transport: Transport,
                 wake: asyncio.Event, failed: Callable[[str], None] = lambda work: None,
                 servers: Sequence[str] | None = None, cluster: Cluster | None = None) -> None:
        self.store = store
        self.scenario = scenario
        self.clock = clock
        self.transport = transport
        self.servers = tuple(servers or (s.name for s in scenario.servers))
        self.cluster = cluster
        self._wake = wake
        self._failed = failed
        # The pieces failing now: evented once when they start failing, not at every tick.
        self.failing: set[str] = set()

    @property
    def leading(self) -> bool:
        return self.cluster is None or self.cluster.leading

    async def run_due(self) -> int:
        """Do every piece of scheduled work whose time has come; returns how many were done
        (a piece that failed counts none, and is tried again at the next call)."""
        work = [(name, partial(fn, servers=self.servers) if not org else fn)
                for name, fn, org in WORK if self.leading or not org]
        # Handed to the store together, the writes share one group commit, each in a
        # savepoint of its own when one fails (stores.db), in the order of WORK.
        results = await asyncio.gather(
            *(self._write(fn) for _, fn in work), return_exceptions=True)
        done = 0
        for (name, _), result in zip(work, results, strict=True):
            if isinstance(result, Exception):
                await self._report(name, result)
            elif isinstance(result, BaseException):
                raise result
            else:
                self.failing.discard(name)
                done += result
        return done + await self._isolated_links()

    async def _write(self, work: Callable[[Tx, Scenario], int]) -> int:
        return await self.store.write(lambda tx: work(tx, self.scenario))

    async def _isolated_links(self) -> int:
        """Kick every link with mail due; a failure is reported, not raised."""
        try:
            links = await self.store.read(lambda c: due_links(c, self.scenario,
                                                              self.clock.now(), self.servers))
            for server, target in links:
                self.transport.kick(server, target)
        except Exception as exc:  # isolated as each piece of run_due is
            await self._report("links", exc)
            return 0
        self.failing.discard("links")
        return len(links)

    async def _report(self, name: str, exc: Exception) -> None:
        """Count a failure; log and event the first of a run of them."""
        self._failed(name)
        if name in self.failing:
            return
        self.failing.add(name)
        log.error("scheduled work %r failed; trying again at every tick", name, exc_info=exc)
        text = (f"Scheduled work {name!r} failed and is retried at every tick:"
                f" {type(exc).__name__}: {str(exc)[:200]}")
        with contextlib.suppress(Exception):  # a store that takes no write cannot log it
            await self.store.write(
                lambda tx: tx.event("mailflow", WORK_FAILED_EVENT, "Error", "-", text))

    async def settle(self) -> None:
        """Run due work and wait for the transport until nothing more happens at this instant."""
        while True:
            await self.transport.idle()
            if not await self.run_due():
                await self.transport.idle()
                return

    async def advance(self, seconds: float) -> float:
        """Move the lab clock forward, stopping at every due time on the way, so that a
        queue retried every 10 minutes is retried six times in an hour, not once. In a lab
        of several processes the clock is the organization's: each stop waits until every
        process has done its work due there."""
        target = self.clock.now() + seconds
        while (due := await self.store.read(self._next_due)) and (
            due <= target
        ):
            await self._stop_at(due)
        await self._stop_at(max(target, self.clock.now()))
        await self.store.write(meta.save_clock)
        return self.clock.now()

    async def _stop_at(self, at: float) -> None:
        if self.cluster is None:
            self.clock.advance(max(0.0, at - self.clock.now()))
            await self.settle()
            return
        await self.cluster.set_clock(at, self.clock.speed)
        await self.settle()
        await self.cluster.wait_settled(at)
        await self.settle()  # what the others' work at ``at`` handed to this process

    def _next_due(self, db: Read) -> float | None:
        """The first time after now at which anything falls due, delay notices included."""
        now = self.clock.now()
        times = [t for t in (next_due(db, self.scenario, now),
                              expiry.next_due(db, self.scenario, now))
                 if t is not None]
        return min(times, default=None)

    async def tick_loop(self) -> None:
        """Run due work at every tick or wake-up, and save the clock now and then."""
        saved_at = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK_SECONDS)
            self._wake.clear()
            if self.cluster is not None and await self.cluster.follow():
                await recover(self.store, self.scenario)  # this process has begun to lead
            at = self.clock.now()
            await self.run_due()
            if self.cluster is not None:
                # Settled at ``at`` once its links are idle too: an advance may go on.
                await self.cluster.beat(None if self.transport.busy() else at)
            if self.leading and time.monotonic() - saved_at > CLOCK_SAVE_SECONDS:
                saved_at = time.monotonic()
                with contextlib.suppress(Exception):  # a failing store is evented above
                    await self.store.write(meta.save_clock)


async def recover(store: Backend, scenario: Scenario) -> None:
    """Take up a stored organization (a restart, or a new leader): moves that were running
    as their engines do after a crash, the 5.5 directories of a store from before them
    seeded (issue 17), and mail for other domains following this run's smarthost, or
    waiting for one. Each in a write of its own."""
    await store.write(lambda tx: moves.recover(tx, scenario))
    await store.write(lambda tx: adc.seed(tx, scenario))
    await store.write(lambda tx: categorizer.reroute_external(tx, scenario))


def next_due(db: Read, scenario: Scenario, after: float) -> float | None:
    """The first time after ``after`` at which scheduled work falls due: one seek per
    non-empty queue and per move table index, never a read of every queued pair."""
    times = [
        t for server, queue in queue_state.queue_keys(db, (s.name for s in scenario.servers))
        if (t := queue_state.next_attempt_after(db, server, queue, after)) is not None
    ]
    moves_due = stored_moves.next_due(db, after)
    if moves_due is not None:
        times.append(moves_due)
    adc_due = adc.next_due(db, scenario, after)
    if adc_due is not None:
        times.append(adc_due)
    return min(times, default=None)
