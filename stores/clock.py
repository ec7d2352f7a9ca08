"""The lab clock: one simulated time for every schedule in the lab.

Simulated time runs at ``speed`` simulated seconds per real second from a
start instant; ``advance`` jumps it forward. A speed of 0 gives a manual clock
that only moves when advanced, which is what tests and scripted labs use.
"""

from __future__ import annotations

import time


class Clock:
    def __init__(self, start: float | None = None, speed: float = 1.0) -> None:
        if speed < 0:
            raise ValueError("speed must be >= 0")
        self.speed = speed
        self._start = time.time() if start is None else start
        self._mono0 = time.monotonic()
        self._offset = 0.0

    @property
    def manual(self) -> bool:
        return self.speed == 0

    def now(self) -> float:
        """Simulated seconds since the Unix epoch."""
        return self._start + (time.monotonic() - self._mono0) * self.speed + self._offset

    def set(self, now: float, speed: float) -> None:
        """Run on from ``now`` at ``speed``: a lab process takes up its organization's clock."""
        if speed < 0:
            raise ValueError("speed must be >= 0")
        self.speed = speed
        self._start, self._mono0, self._offset = now, time.monotonic(), 0.0

    def follow(self, now: float, speed: float) -> None:
        """As ``set``, but never back in time."""
        self.set(max(self.now(), now), speed)

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._offset += seconds
        return self.now()
