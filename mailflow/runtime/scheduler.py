"""The lab's scheduler: the clock and the store in, scheduled work done out.

``Scheduler`` runs the work whose time has come (moves begun and completed,
deferred delivery retried, mail released, MTA transfers, delay notices and
expiry from ``routing.dsn``) and kicks the SMTP transport for due links. It
advances the simulated clock stopping at every due time on the way, settles
until nothing more happens at an instant, and ticks in the background when
nothing wakes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from mailflow.moves import dispatch as moves
from routing import categorizer, expiry, mta
from routing.transport import Transport, due_links
from stores import meta, queue_state
from stores.backend import Backend, Read, Tx
from stores.clock import Clock
from stores.topology import Scenario

log = logging.getLogger(__name__)

# How often (real seconds) the lab looks for due work when nothing wakes it.
TICK_SECONDS = 0.2
# How often (real seconds) the simulated time is saved for the next start.
CLOCK_SAVE_SECONDS = 5.0


class Scheduler:
    """Scheduled work of one running lab; ``wake`` is set by whoever made work due now."""

    def __init__(self, store: Backend, scenario: Scenario, clock: Clock, transport: Transport,
                 wake: asyncio.Event) -> None:
        self.store = store
        self.scenario = scenario
        self.clock = clock
        self.transport = transport
        self._wake = wake

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
            + expiry.run_due(tx, self.scenario)
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
        await self.store.write(meta.save_clock)
        await self.settle()
        return self.clock.now()

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
            try:
                await self.run_due()
                if time.monotonic() - saved_at > CLOCK_SAVE_SECONDS:
                    saved_at = time.monotonic()
                    await self.store.write(meta.save_clock)
            except Exception:
                log.exception("scheduled work failed; trying again at the next tick")


def next_due(db: Read, scenario: Scenario, after: float) -> float | None:
    """The first time after ``after`` at which scheduled work falls due: one seek per
    non-empty queue and per move table index, never a read of every queued pair."""
    times = [
        t for server, queue in queue_state.queue_keys(db, (s.name for s in scenario.servers))
        if (t := queue_state.next_attempt_after(db, server, queue, after)) is not None
    ]
    moves_due = queue_state.next_move_due(db, after)
    if moves_due is not None:
        times.append(moves_due)
    return min(times, default=None)
