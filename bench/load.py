"""The load: Postfix's ``smtp-source -d`` when installed, else bench/loadgen.py (aiosmtplib).

In: a port, a number of sessions and messages, a recipient. Out: the seconds until
every message had its 250 (``Load.run``), or loadgen's JSON document with per-message
latency (``loadgen``).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
from pathlib import Path
from typing import cast

from bench.procs import PY
from bench.results import LoadgenDoc

SENDER = "bench@example.net"
CLIENT = "client.example.net"
LOADGEN = Path(__file__).resolve().parent / "loadgen.py"


@dataclasses.dataclass
class Load:
    smtp_source: str | None
    size: int

    @property
    def name(self) -> str:
        return "smtp-source -d" if self.smtp_source else "bench/loadgen.py (aiosmtplib)"

    def run(self, port: int, sessions: int, messages: int, rcpt: str) -> float:
        """Send ``messages`` over ``sessions`` connections; returns the elapsed seconds."""
        sessions = max(1, min(sessions, messages))
        bound = 120 + messages / 20  # a stuck server, not a slow one
        if self.smtp_source is None:
            doc = loadgen(port, sessions, messages, rcpt, self.size, bound)
            if doc["sent"] != messages:
                raise RuntimeError(f"loadgen sent {doc['sent']} of {messages}: {doc['errors']}")
            return float(doc["elapsed"])
        argv = [self.smtp_source, "-d", "-s", str(sessions), "-m", str(messages),
                "-l", str(self.size), "-f", SENDER, "-t", rcpt, "-M", CLIENT,
                f"127.0.0.1:{port}"]
        t0 = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=bound)
        elapsed = time.perf_counter() - t0
        if done.returncode != 0 or "fatal" in done.stderr:
            raise RuntimeError(f"smtp-source exited {done.returncode}: {done.stderr[-2000:]}")
        return elapsed


def loadgen(port: int, sessions: int, messages: int, rcpt: str, size: int,
            timeout: float) -> LoadgenDoc:
    done = subprocess.run(
        [PY, str(LOADGEN), "--port", str(port), "--sessions", str(sessions),
         "--messages", str(messages), "--size", str(size), "--rcpt", rcpt,
         "--timeout", str(timeout)],
        capture_output=True, text=True, timeout=timeout + 30,
    )
    if done.returncode != 0:
        raise RuntimeError(f"loadgen exited {done.returncode}: {done.stderr[-2000:]}")
    return cast(LoadgenDoc, json.loads(done.stdout.strip().splitlines()[-1]))
