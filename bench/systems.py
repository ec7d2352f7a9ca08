"""The servers under load, and the two that are not Postfix or the lab: smtp-sink, the C
ceiling of SMTP on loopback, and the aiosmtpd sinks of bench/sinks.py.

In: the process registry, a work directory, a binary or a mode. Out: a started
``System`` with its port and pid, and how many messages reached its store.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from bench.procs import PY, Processes, free_port, wait_port, wait_until
from bench.results import BARE, SQLITE

SINKS = Path(__file__).resolve().parent / "sinks.py"


class System:
    """A server under load. ``delivered`` counts what reached its store (None: nothing is
    stored, or it is stored before the 250, so end to end is the accepted rate)."""

    name = ""
    rcpt = "bench@bench.test"
    port = 0
    pid: int | None = None
    stores_before_250 = False

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def delivered(self) -> int | None:
        return None


class SmtpSink(System):
    name = "smtp-sink"

    def __init__(self, procs: Processes, top: Path, binary: str) -> None:
        self.procs, self.top, self.binary = procs, top, binary
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        for _ in range(3):  # the free port can be taken between the pick and the bind
            self.port = free_port()
            user = ["-u", "postfix"] if os.geteuid() == 0 else []
            self.proc = self.procs.spawn(
                [self.binary, *user, f"127.0.0.1:{self.port}", "1024"],
                self.top / "smtp-sink.log")
            try:
                wait_port(self.port, self.proc, 10)
            except RuntimeError:
                continue
            self.pid = self.proc.pid
            return
        raise RuntimeError("smtp-sink did not start; see smtp-sink.log")

    def stop(self) -> None:
        if self.proc is not None:
            self.procs.stop(self.proc)


class AiosmtpdSink(System):
    def __init__(self, procs: Processes, top: Path, mode: str) -> None:
        self.procs, self.top, self.mode = procs, top, mode
        self.name = BARE if mode == "bare" else SQLITE
        self.stores_before_250 = mode == "sqlite"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        ready = self.top / f"sink-{self.mode}.port"
        argv = [PY, str(SINKS), self.mode, "--ready", str(ready)]
        if self.mode == "sqlite":
            argv += ["--db", str(self.top / "sink.sqlite")]
        self.proc = self.procs.spawn(argv, self.top / f"sink-{self.mode}.log")
        wait_until(ready.exists, 30, f"{self.name} start", interval=0.01)
        self.port = int(ready.read_text())
        self.pid = self.proc.pid

    def stop(self) -> None:
        if self.proc is not None:
            self.procs.stop(self.proc)
