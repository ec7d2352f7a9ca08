"""What the benchmark reads about processes and the machine, from /proc (no psutil).

In: a process id. Out: its CPU seconds and its RSS (VmRSS, VmHWM) with its children's
added, the machine's description for the report, and summaries of measured values.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import subprocess
from pathlib import Path

import aiosmtpd

from bench.procs import tool
from bench.results import Machine, Percentiles, Summary


def children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (the lab's sender worker, Postfix's daemons)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(c) for c in (task / "children").read_text().split()]
    return found


def cpu_seconds(pid: int | None) -> float | None:
    """User plus system CPU time of a process (all its threads) and of its children, live
    (counted by themselves) or exited and reaped (counted in its own), from /proc."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    own = sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu_seconds(child) or 0.0 for child in children(pid))


def vm_status(pid: int) -> dict[str, float]:
    """VmHWM (peak RSS) and VmRSS, in MB, of a process and its live children added up (the
    sum of the peaks bounds the peak of the sum), from /proc (psutil is not needed)."""
    out: dict[str, float] = {}
    for proc in (pid, *children(pid)):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{proc}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    out[key] = out.get(key, 0.0) + int(value.split()[0]) / 1024
    return out


def summary(values: list[float]) -> Summary:
    if not values:
        return {"n": 0}
    out: Summary = {"n": len(values), "median": statistics.median(values),
                    "min": min(values), "max": max(values)}
    if len(values) > 1:
        mean = statistics.mean(values)
        out["cv_percent"] = 100 * statistics.stdev(values) / mean if mean else None
    return out


def percentiles(values: list[float]) -> Percentiles:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    ordered = sorted(values)

    def at(q: float) -> float:
        rank = round(q / 100 * len(ordered) + 0.5)
        return ordered[max(0, min(len(ordered) - 1, rank - 1))]

    return {"p50": at(50), "p90": at(90), "p99": at(99), "max": ordered[-1]}


def machine() -> Machine:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError):
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split(":", 1)[1].strip()
    postfix = ""
    postconf = tool("postconf")
    if postconf:
        with contextlib.suppress(Exception):
            postfix = subprocess.run([postconf, "-d", "-h", "mail_version"],
                                     capture_output=True, text=True, timeout=30).stdout.strip()
    return {
        "nproc": len(os.sched_getaffinity(0)), "cpu_model": model, "memory": mem,
        "kernel": platform.release(), "python": platform.python_version(),
        "aiosmtpd": getattr(aiosmtpd, "__version__", ""), "postfix": postfix,
        "loadavg_start": os.getloadavg(),
    }
