"""The lab alone: release drains, the deep queue, and startup.

In: the run's context (a fresh lab is started for each measurement, in its own data
directory under the work directory and its own store: SQLite there, or a fresh
PostgreSQL database). Out: ``drain`` (N parked behind a held move, then
released locally or over the SMTP hop), ``deep`` (reads, RSS and restarts with a deep
queue, copied up in SQL by stores.bulk, then released at once) and ``startup``.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from bench.lab import ALICE, Lab
from bench.measure import Bench, loadavg
from bench.probes import cpu_seconds, percentiles, summary
from bench.procs import PY, log, wait_until
from bench.report import fmt
from bench.results import Clone, Deep, Drain, Parked, Percentiles, Reads, Release, Startup
from stores.bulk import amplify_queue, delivered_times
from stores.queue_ids import DEFERRED

SOURCE, TARGET = "EX2003-A", "EX2003-B"


def release_latencies(db: Path | str, wall0: float, server: str) -> Percentiles | None:
    """Per message: real time in ms from the release request (``wall0``) to its delivery,
    from the lab's own trace. None when the store has no such trace."""
    times = delivered_times(db, server)
    return None if times is None else percentiles([(t - wall0) * 1000 for t in times])


def park(bench: Bench, lab: Lab, messages: int, chunk: int | None = None) -> Parked:
    """Send ``messages`` to alice (held: they park in deferred); returns load figures."""
    chunk = chunk or messages
    sent, elapsed = 0, 0.0
    rss_curve: list[tuple[int, float]] = []
    chunk_rates: list[tuple[int, float]] = []
    while sent < messages:
        n = min(chunk, messages - sent)
        took = bench.load.run(lab.port, 20, n, ALICE)
        elapsed += took
        sent += n
        rss_curve.append((sent, lab.vm().get("VmRSS", 0.0)))
        chunk_rates.append((sent, n / took))
        if chunk < messages:
            log(f"  parked {sent}/{messages} (this chunk {n / took:.0f} msg/s),"
                f" RSS {rss_curve[-1][1]:.0f} MB")
    depth = lab.queue_depth(SOURCE, DEFERRED)
    if depth != messages:
        raise RuntimeError(f"{depth} parked in deferred, {messages} sent")
    return {"messages": messages, "accepted_s": elapsed, "accepted_rate": messages / elapsed,
            "rss_mb_curve": rss_curve, "chunk_rates": chunk_rates}


def drain(bench: Bench, mode: str, messages: int) -> Drain:
    """Park ``messages`` behind a held move of alice to EX2003-B, then release them:
    ``local``: fail the move (alice stays on EX2003-A, mail delivered there);
    ``hop``: complete it (the mail relayed over SMTP to EX2003-B and delivered there)."""
    lab = Lab(bench.procs, bench.top, f"lab-drain-{mode}-{messages}",
              store=bench.stores.new())
    lab.start()
    try:
        move = lab.hold(ALICE, TARGET)
        parked = park(bench, lab, messages)
        action = "fail" if mode == "local" else "complete"
        la = loadavg()
        wall0 = time.time()
        cpu0, t0 = cpu_seconds(lab.pid), time.perf_counter()
        lab.api("POST", f"/api/v1/moves/{move}/{action}")
        request_s = time.perf_counter() - t0
        wait_until(lambda: lab.delivered() >= messages, 120 + messages / 5,
                   f"drain {mode}", interval=0.05)
        drain_s, cpu1 = time.perf_counter() - t0, cpu_seconds(lab.pid)
        box = lab.mailbox()
        expected = SOURCE if mode == "local" else TARGET
        if box["server"] != expected or box["message_count"] != messages:
            raise RuntimeError(f"after the drain: {box['server']} {box['message_count']}")
        result: Drain = {
            "mode": mode, "messages": messages, "action": action, "parked": parked,
            "request_s": request_s, "drain_s": drain_s, "rate": messages / drain_s,
            "cpu_ms_per_msg": (None if cpu0 is None or cpu1 is None
                               else 1000 * (cpu1 - cpu0) / messages),
            "latency_ms": release_latencies(lab.store_location, wall0, expected),
            "queues_left": [r for r in lab.api("GET", "/api/v1/queues") if r["message_count"]],
            "vm_mb": lab.vm(), "loadavg_before": la, "startup_s": lab.startups[-1],
        }
        log(f"drain {mode:5} {messages:6}: {result['rate']:7.0f} msg/s "
            f"({drain_s:.2f} s; the {action} request took {request_s:.2f} s;"
            f" {fmt(result['cpu_ms_per_msg'], 2)} CPU ms/msg)")
        return result
    finally:
        lab.stop()


def deep(bench: Bench, messages: int, clone: int | None) -> Deep:
    """Reads with ``messages`` parked over SMTP, after a restart, and after copying them
    up to ``clone`` (the lab stopped); then, unless told not to, the release of them all."""
    lab = Lab(bench.procs, bench.top, f"lab-deep-{messages}", store=bench.stores.new())
    lab.start()
    try:
        startup_empty_s = lab.startups[-1]
        move = lab.hold(ALICE, TARGET)
        parked = park(bench, lab, messages, chunk=bench.settings.deep_chunk)
        loaded = reads(bench, lab, messages)
        lab.stop()
        lab.start()
        out: Deep = {"messages": messages, "startup_empty_s": startup_empty_s,
                     "parked": parked, "loaded": loaded, "restart_s": lab.startups[-1],
                     "restarted": reads(bench, lab, messages)}
        queued = messages
        if clone and clone > messages:
            out["clone"] = cloned(bench, lab, clone)
            queued = out["clone"]["queued"]
        if bench.settings.deep_release:
            out["release"] = release_deep(lab, move, queued)
    finally:
        lab.stop()
    return out


def cloned(bench: Bench, lab: Lab, clone: int) -> Clone:
    """Stop the lab, copy its parked mail in SQL up to ``clone``, restart it and read."""
    lab.stop()
    t0 = time.perf_counter()
    total = amplify_queue(lab.data / "mailflow.db", clone)
    copy_s = time.perf_counter() - t0
    lab.start()
    return {"target": clone, "queued": total, "copy_s": copy_s,
            "restart_s": lab.startups[-1], "reads": reads(bench, lab, total)}


def release_deep(lab: Lab, move: str, queued: int) -> Release:
    """Fail the held move with the whole deep queue behind it (local delivery at the
    source): the drain rate at that depth and the peak RSS it costs."""
    before = lab.vm()
    wall0 = time.time()
    t0 = time.perf_counter()
    lab.api("POST", f"/api/v1/moves/{move}/fail", timeout=max(300.0, queued / 50))
    request_s = time.perf_counter() - t0
    wait_until(lambda: lab.delivered() >= queued, 120 + queued / 5, "deep release",
               interval=0.1)
    drain_s = time.perf_counter() - t0
    result: Release = {
        "messages": queued, "request_s": request_s, "drain_s": drain_s,
        "rate": queued / drain_s, "vm_mb_before": before, "vm_mb": lab.vm(),
        "latency_ms": release_latencies(lab.store_location, wall0, SOURCE)}
    log(f"  released {queued} (move failed, local delivery): {result['rate']:.0f} msg/s"
        f" ({drain_s:.1f} s), peak RSS {result['vm_mb'].get('VmHWM', 0):.0f} MB")
    return result


def reads(bench: Bench, lab: Lab, expected: int) -> Reads:
    """Scrape /metrics, list the queues (API and CLI) with a deep queue; RSS."""
    settings = bench.settings
    depth = lab.queue_depth(SOURCE, DEFERRED)
    # What the idle lab costs with this queue (its scheduler ticks every 0.2 s).
    cpu0, t0 = cpu_seconds(lab.pid), time.perf_counter()
    time.sleep(settings.idle_seconds)
    cpu1, idle_wall = cpu_seconds(lab.pid), time.perf_counter() - t0
    idle_cpu = (100 * (cpu1 - cpu0) / idle_wall
                if cpu0 is not None and cpu1 is not None else None)
    metrics = [lab.timed_get("/metrics", auth=False) for _ in range(settings.read_repeats)]
    api_queues = [lab.timed_get("/api/v1/queues") for _ in range(settings.read_repeats)]
    cli: list[float] = []
    for _ in range(max(1, settings.read_repeats // 2)):
        t0 = time.perf_counter()
        done = subprocess.run([PY, "-m", "mailflow", "queues", "--data", str(lab.data)],
                              capture_output=True, text=True, timeout=300, cwd=lab.dir)
        cli.append(time.perf_counter() - t0)
        if done.returncode != 0:
            raise RuntimeError(f"mailflow queues: {done.stderr}")
    result: Reads = {"deferred": depth, "expected": expected,
                     "metrics_s": summary(metrics), "api_queues_s": summary(api_queues),
                     "cli_queues_s": summary(cli), "vm_mb": lab.vm(),
                     "idle_cpu_percent": idle_cpu}
    log(f"  {depth} queued: /metrics {result['metrics_s']['median'] * 1000:.0f} ms, "
        f"GET queues {result['api_queues_s']['median'] * 1000:.0f} ms, "
        f"mailflow queues {result['cli_queues_s']['median']:.2f} s, "
        f"RSS {result['vm_mb'].get('VmRSS', 0):.0f} MB"
        f" (peak {result['vm_mb'].get('VmHWM', 0):.0f}), idle CPU {fmt(idle_cpu)}%")
    return result


def startup(bench: Bench, others: list[float]) -> Startup:
    """Start and stop one lab ``--startup-repeats`` times (its first start on a new data
    directory); every other lab start of the run (``others``) counts too."""
    lab = Lab(bench.procs, bench.top, "lab-startup", store=bench.stores.new())
    try:
        for _ in range(bench.settings.startup_repeats):
            lab.start()
            lab.stop()
    finally:
        lab.stop()
    return {"fresh_data_dir_s": lab.startups[0] if lab.startups else None,
            "existing_data_dir_s": summary(lab.startups[1:]),
            "all_s": lab.startups + others}

