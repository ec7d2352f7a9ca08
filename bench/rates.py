"""Rates and latency of every system, measured in one run with the systems taken in turn.

In: the run's context and the started systems. Out: for each system and session count
the accepted and end-to-end rates and CPU time per message (``rates``), and the
per-message latency from bench/loadgen.py at 20 sessions (``latency``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from bench.load import loadgen
from bench.measure import Bench, point
from bench.postfix import Postfix
from bench.probes import percentiles, summary
from bench.procs import log, wait_until
from bench.results import Latency, LatencyEntry, Point, RateAt
from bench.systems import SmtpSink, System


def _logged(system: System, label: str, result: Point, cpu: bool) -> None:
    log(f"{system.name:28} {label}: {result.accepted_rate:7.0f} msg/s accepted"
        + (f", {result.e2e_rate:7.0f} end to end" if result.e2e_rate is not None else "")
        + (f", {result.cpu_ms_per_msg:.2f} CPU ms/msg"
           if cpu and result.cpu_ms_per_msg is not None else ""))


def _rate_at(points: list[Point]) -> RateAt:
    """The summaries of the runs at one session count (what was measured in the first)."""
    out: dict[str, object] = {"accepted_rate": summary([p.accepted_rate for p in points])}
    first = points[0]
    if first.cpu_ms_per_msg is not None:
        out["cpu_ms_per_msg"] = summary([p.cpu_ms_per_msg or 0.0 for p in points])
    if first.e2e_rate is not None:
        out["e2e_rate"] = summary([p.e2e_rate or 0.0 for p in points])
    out["runs"] = [p.as_json() for p in points]
    return cast(RateAt, out)


def rates(bench: Bench, systems: list[System]) -> dict[str, dict[str, RateAt]]:
    settings = bench.settings
    runs: dict[str, dict[int, list[Point]]] = {s.name: {} for s in systems}
    # Warm-up (first connections, SQLite files, Postfix processes), not recorded.
    for system in systems:
        point(bench, system, 5, min(200, settings.messages))
    # The headline: 20 sessions, the systems taken in turn, repeated.
    for rep in range(settings.repeats):
        for system in systems:
            result = point(bench, system, 20, settings.messages)
            runs[system.name].setdefault(20, []).append(result)
            _logged(system, f"20 sessions run {rep + 1}", result, cpu=True)
    for sessions in settings.sessions:
        if sessions == 20:
            continue
        for system in systems:
            result = point(bench, system, sessions, settings.sweep_messages)
            runs[system.name].setdefault(sessions, []).append(result)
            _logged(system, f"{sessions:2} sessions", result, cpu=False)
    return {name: {str(s): _rate_at(points) for s, points in sorted(by_sessions.items())}
            for name, by_sessions in runs.items()}


def _delivered(system: Postfix, target: int) -> Callable[[], bool]:
    return lambda: system.delivered() >= target


def latency(bench: Bench, systems: list[System]) -> Latency:
    """Per-message latency at 20 sessions with the aiosmtplib generator."""
    out: dict[str, LatencyEntry] = {}
    messages = bench.settings.latency_messages
    for system in systems:
        if isinstance(system, SmtpSink):
            continue
        since = len(system.maillog()) if isinstance(system, Postfix) else 0
        before = system.delivered()
        doc = loadgen(system.port, 20, messages, system.rcpt, bench.settings.size, 600)
        entry: LatencyEntry = {"client_ms": doc["latency_ms"], "rate": doc["rate"],
                               "sent": doc["sent"], "refused": doc["refused"]}
        if isinstance(system, Postfix) and before is not None:
            wait_until(_delivered(system, before + doc["sent"]), 300,
                       "Postfix latency probe delivered")
            delays = percentiles([d * 1000 for d in system.delays(since)])
            entry["postfix_delay_ms"] = delays
        out[system.name] = entry
        log(f"{system.name:28} latency p50 {doc['latency_ms']['p50'] or 0:.1f} ms, "
            f"p99 {doc['latency_ms']['p99'] or 0:.1f} ms (loadgen {doc['rate']:.0f} msg/s)")
    return {"generator": "bench/loadgen.py, 20 sessions", "messages": messages, "systems": out}
