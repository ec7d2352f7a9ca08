"""The load: Postfix's ``smtp-source -d`` when installed, else bench/loadgen.py (aiosmtplib).

In: a port, a number of sessions and messages, a recipient. Out: the seconds until
every message had its 250 (``Load.run``; ``spawn`` and ``finish`` for loads side by
side), or loadgen's JSON document with per-message latency (``loadgen``).
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
        t0 = time.perf_counter()
        proc = self.spawn(port, sessions, messages, rcpt)
        reported = self.finish(proc, messages)
        return time.perf_counter() - t0 if reported is None else reported

    def spawn(self, port: int, sessions: int, messages: int, rcpt: str
              ) -> subprocess.Popen[str]:
        """Start sending, without waiting (``finish`` waits): loads run side by side."""
        sessions = max(1, min(sessions, messages))
        if self.smtp_source is None:
            argv = loadgen_argv(port, sessions, messages, rcpt, self.size, bound(messages))
        else:
            argv = [self.smtp_source, "-d", "-s", str(sessions), "-m", str(messages),
                    "-l", str(self.size), "-f", SENDER, "-t", rcpt, "-M", CLIENT,
                    f"127.0.0.1:{port}"]
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True)

    def finish(self, proc: subprocess.Popen[str], messages: int) -> float | None:
        """Wait for a load that ``spawn`` started; raises unless every message had its 250.
        Returns loadgen's own elapsed seconds (None for smtp-source: time it outside)."""
        try:
            stdout, stderr = proc.communicate(timeout=bound(messages) + 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        if self.smtp_source is None:
            if proc.returncode != 0:
                raise RuntimeError(f"loadgen exited {proc.returncode}: {stderr[-2000:]}")
            doc = cast(LoadgenDoc, json.loads(stdout.strip().splitlines()[-1]))
            if doc["sent"] != messages:
                raise RuntimeError(f"loadgen sent {doc['sent']} of {messages}: {doc['errors']}")
            return float(doc["elapsed"])
        if proc.returncode != 0 or "fatal" in stderr:
            raise RuntimeError(f"smtp-source exited {proc.returncode}: {stderr[-2000:]}")
        return None


def bound(messages: int) -> float:
    """How long a load of ``messages`` may take: a stuck server, not a slow one."""
    return 120 + messages / 20


def loadgen_argv(port: int, sessions: int, messages: int, rcpt: str, size: int,
                 timeout: float) -> list[str]:
    return [PY, str(LOADGEN), "--port", str(port), "--sessions", str(sessions),
            "--messages", str(messages), "--size", str(size), "--rcpt", rcpt,
            "--timeout", str(timeout)]


def loadgen(port: int, sessions: int, messages: int, rcpt: str, size: int,
            timeout: float) -> LoadgenDoc:
    done = subprocess.run(loadgen_argv(port, sessions, messages, rcpt, size, timeout),
                          capture_output=True, text=True, timeout=timeout + 30)
    if done.returncode != 0:
        raise RuntimeError(f"loadgen exited {done.returncode}: {done.stderr[-2000:]}")
    return cast(LoadgenDoc, json.loads(done.stdout.strip().splitlines()[-1]))
