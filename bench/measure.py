"""What every measurement shares: the settings of a run, its context, one load run.

In: the settings (from the command line, or the defaults of a full run), the process
registry, the work directory, the load and the labs' stores. Out: ``point``, one load run
against one system with its accepted and end-to-end rates and the server's CPU time per
message.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

from bench.load import Load
from bench.postfix import Postfix
from bench.probes import cpu_seconds
from bench.procs import Processes, wait_until
from bench.results import Point
from bench.store import Stores
from bench.systems import System


@dataclasses.dataclass
class Settings:
    """Sizes and repeats of a run (the defaults: the full benchmark's)."""

    messages: int = 6_000
    sweep_messages: int = 3_000
    repeats: int = 3
    sessions: list[int] = dataclasses.field(default_factory=lambda: [1, 5, 20, 50])
    latency_messages: int = 2_000
    size: int = 2048
    deep_chunk: int = 20_000
    deep_release: bool = True
    read_repeats: int = 5
    idle_seconds: float = 3.0
    startup_repeats: int = 5


@dataclasses.dataclass
class Bench:
    """The context of every measurement of one run."""

    settings: Settings
    procs: Processes
    top: Path
    load: Load
    stores: Stores = dataclasses.field(default_factory=Stores)


def loadavg() -> float:
    return os.getloadavg()[0]


def point(bench: Bench, system: System, sessions: int, messages: int) -> Point:
    """One load run; accepted and end-to-end rates."""
    before = system.delivered()
    la = loadavg()
    # Postfix is many processes; the others are one (the lab's threads and worker included).
    pid = None if isinstance(system, Postfix) else system.pid
    cpu0 = cpu_seconds(pid)
    t0 = time.perf_counter()
    accepted_s = bench.load.run(system.port, sessions, messages, system.rcpt)
    out = Point(sessions=sessions, messages=messages, accepted_s=accepted_s,
                accepted_rate=messages / accepted_s, loadavg_before=la)
    if before is not None:
        target = before + messages
        wait_until(lambda: (system.delivered() or 0) >= target, 120 + messages / 10,
                   f"{system.name}: {messages} delivered", interval=0.02)
        out.e2e_s = time.perf_counter() - t0
        out.e2e_rate = messages / out.e2e_s
    elif system.stores_before_250:
        out.e2e_s, out.e2e_rate = accepted_s, messages / accepted_s
    cpu1 = cpu_seconds(pid)
    if cpu0 is not None and cpu1 is not None:
        # CPU of the server per message: far less sensitive to a busy machine than rates.
        out.cpu_ms_per_msg = 1000 * (cpu1 - cpu0) / messages
    return out
