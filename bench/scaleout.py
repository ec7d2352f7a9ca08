"""Throughput of the default scenario in 1, 2 and 4 processes on one PostgreSQL (issue 22).

    python bench/scaleout.py --processes 1,2,4 --messages N --sessions 20 \\
        [--repeats R] [--store-url postgresql://ADMIN] [--out FILE.json]
    python bench/scaleout.py --store sqlite --processes 1 ...   # the one-process reference

(or ``python -m bench.scaleout ...``). In: the layouts (1: one process runs every server
of mixed-2003; 2: one process per site; 4: one per server, each ``mailflow run --servers``
with its own data directory), the sizes, and an existing PostgreSQL server's admin URL
(default: a throwaway server for the run; ``--store sqlite``: one process on SQLite, the
same load's reference). Out: per layout and repeat, on stderr and as
JSON, the accepted and end-to-end rates, the CPU ms per message of the lab processes
(their sender workers included) and of PostgreSQL (every process of the server, when it
runs here), and how many processes wait for the lab's write lock on average
(bench.pgprobe). Every process it started is stopped at the end, also on Ctrl-C or
SIGTERM.

Each run gets a fresh database and fresh processes, started one at a time (the first
seeds the database), with the clock stopped (``--speed 0``). The load is ``sessions``
connections, each its own smtp-source (or bench/loadgen.py) of one session: session k
goes to server k mod S of the S servers and to a mailbox homed on server
(k + 1 + k div S) mod S. So every endpoint gets its share, and most mail hops to another
server (at 20 sessions, 4 in 5 messages), in another process when the layout splits
them. *End to end* runs until the recipients' mailboxes hold every message
(``GET /api/v1/mailboxes``, polled every 0.1 s). The layouts are taken in turn, repeat
by repeat, so a busy spell hits them all.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from bench.lab import Lab
from bench.load import Load
from bench.pgprobe import LockWaits
from bench.probes import cpu_seconds, machine
from bench.procs import PY, Processes, log, tool, wait_until
from bench.store import KINDS, Stores
from mailflow import scenarios

SCENARIO = scenarios.load("mixed-2003")
SERVERS = [s.name for s in SCENARIO.servers]
HOMED = {name: [m.address for m in SCENARIO.mailboxes if m.server == name]
         for name in SERVERS}


def layout(processes: int) -> list[list[str]]:
    """The servers each process runs: all in one, one process per site, or one each."""
    if processes == 1:
        return [SERVERS]
    sites = list(dict.fromkeys(s.site for s in SCENARIO.servers))
    if processes == len(sites):
        return [[s.name for s in SCENARIO.servers if s.site == site] for site in sites]
    if processes == len(SERVERS):
        return [[name] for name in SERVERS]
    raise ValueError(f"{processes} processes: mixed-2003 splits into 1, {len(sites)} or"
                     f" {len(SERVERS)}")


@dataclass
class Stream:
    """One session of the load: its endpoint, its recipient, its share of the messages."""

    server: str
    port: int
    rcpt: str
    messages: int


def plan(endpoints: dict[str, int], sessions: int, messages: int) -> list[Stream]:
    """``messages`` over ``sessions`` single-session streams (see the module's text)."""
    count = len(SERVERS)
    streams = []
    for k in range(sessions):
        server = SERVERS[k % count]
        home = HOMED[SERVERS[(k + 1 + k // count) % count]]
        share = messages // sessions + (1 if k < messages % sessions else 0)
        if share:
            streams.append(Stream(server, endpoints[server], home[k // count % len(home)],
                                  share))
    return streams


def send(load: Load, streams: list[Stream]) -> float:
    """Every stream at once; the seconds until the last had all its 250s."""
    t0 = time.perf_counter()
    running = [(load.spawn(s.port, 1, s.messages, s.rcpt), s) for s in streams]
    for proc, stream in running:
        load.finish(proc, stream.messages)
    return time.perf_counter() - t0


def delivered(lab: Lab, rcpts: set[str]) -> int:
    """How many messages the mailboxes ``rcpts`` hold, organization-wide."""
    rows = lab.api("GET", "/api/v1/mailboxes?limit=1000")
    return sum(int(r["message_count"]) for r in rows if r["address"] in rcpts)


def supports_servers() -> bool:
    """Whether this checkout's ``mailflow run`` takes ``--servers`` (several processes)."""
    done = subprocess.run([PY, "-m", "mailflow", "run", "--help"], capture_output=True,
                          text=True, timeout=60)
    return "--servers" in done.stdout


def start(procs: Processes, top: Path, url: str | None, groups: list[list[str]]
          ) -> list[Lab]:
    """The processes of one layout, one at a time: each is up (its lab.json written)
    before the next starts, so the first alone seeds the database."""
    labs: list[Lab] = []
    for i, group in enumerate(groups):
        lab = Lab(procs, top, f"p{i}", store=url,
                  servers=None if len(groups) == 1 else group)
        labs.append(lab)
        lab.start()
    return labs


def measure(args: argparse.Namespace, procs: Processes, stores: Stores, load: Load,
            top: Path, processes: int) -> dict[str, Any]:
    """One layout on a fresh database: warm up, then the measured load."""
    groups = layout(processes)
    url = stores.new()
    labs = start(procs, top, url, groups)
    try:
        endpoints = {name: port for lab in labs for name, port in lab.endpoints.items()}
        if sorted(endpoints) != sorted(SERVERS):
            raise RuntimeError(f"endpoints {sorted(endpoints)}, not {SERVERS}")
        warm = plan(endpoints, args.sessions, min(200, args.messages))
        streams = plan(endpoints, args.sessions, args.messages)
        rcpts = {s.rcpt for s in warm + streams}
        base = sum(s.messages for s in warm)
        send(load, warm)
        wait_until(lambda: delivered(labs[0], rcpts) >= base, 120, "warm-up delivered", 0.1)
        pids = [lab.pid for lab in labs]
        la = os.getloadavg()[0]
        cpu0 = [cpu_seconds(pid) or 0.0 for pid in pids]
        pg0 = cpu_seconds(stores.postmaster)
        waits = LockWaits(url) if url else None
        if waits is not None:
            waits.start()
        t0 = time.perf_counter()
        accepted_s = send(load, streams)
        target = base + args.messages
        wait_until(lambda: delivered(labs[0], rcpts) >= target, 120 + args.messages / 10,
                   f"{args.messages} delivered", interval=0.1)
        e2e_s = time.perf_counter() - t0
        cpu1 = [cpu_seconds(pid) or 0.0 for pid in pids]
        pg1 = cpu_seconds(stores.postmaster)
        write_lock = waits.stop() if waits is not None else {"mean": None, "busy": None}
        n = args.messages
        result: dict[str, Any] = {
            "processes": processes, "servers": groups, "messages": n,
            "sessions": len(streams), "relayed": sum(
                s.messages for s in streams if s.rcpt not in HOMED[s.server]),
            "accepted_s": accepted_s, "accepted_rate": n / accepted_s,
            "e2e_s": e2e_s, "e2e_rate": n / e2e_s,
            "delivered": delivered(labs[0], rcpts) - base,
            "lab_cpu_ms_per_msg": 1000 * (sum(cpu1) - sum(cpu0)) / n,
            "lab_cpu_ms_per_msg_each": [1000 * (b - a) / n for a, b in zip(cpu0, cpu1,
                                                                           strict=True)],
            "pg_cpu_ms_per_msg": (None if pg0 is None or pg1 is None
                                  else 1000 * (pg1 - pg0) / n),
            "write_lock_waiting": write_lock,
            "queues_left": [r for r in labs[0].api("GET", "/api/v1/queues")
                            if r["message_count"]],
            "startup_s": [lab.startups[-1] for lab in labs], "loadavg_before": la,
        }
    finally:
        for lab in reversed(labs):
            lab.stop()
    pg, lock = result["pg_cpu_ms_per_msg"], result["write_lock_waiting"]["mean"]
    log(f"{processes} process(es): {result['accepted_rate']:.0f} msg/s accepted,"
        f" {result['e2e_rate']:.0f} end to end; CPU ms/msg: lab"
        f" {result['lab_cpu_ms_per_msg']:.2f}, PostgreSQL {'-' if pg is None else f'{pg:.2f}'};"
        f" waiting for the write lock: {'-' if lock is None else f'{lock:.2f}'} on average"
        f" ({result['delivered']} of {n} delivered, {result['relayed']} to another server)")
    return result


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Per number of processes: the median of each rate and CPU figure over the repeats."""
    out: dict[str, dict[str, float | None]] = {}
    for n in sorted({r["processes"] for r in runs}):
        mine = [r for r in runs if r["processes"] == n]
        out[str(n)] = {key: (statistics.median(v) if (v := [
            r[key] for r in mine if r[key] is not None]) else None) for key in (
            "accepted_rate", "e2e_rate", "lab_cpu_ms_per_msg", "pg_cpu_ms_per_msg")}
        locks = [r["write_lock_waiting"]["mean"] for r in mine
                 if r["write_lock_waiting"]["mean"] is not None]
        out[str(n)]["write_lock_waiting"] = statistics.median(locks) if locks else None
    return out


def table(summary: dict[str, dict[str, float | None]]) -> str:
    def cell(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:,.{digits}f}"

    lines = [f"{'processes':>9} {'accepted/s':>11} {'end to end/s':>13}"
             f" {'lab CPU ms/msg':>15} {'PostgreSQL CPU ms/msg':>22}"
             f" {'waiting for the write lock':>27}"]
    for n, s in summary.items():
        lines.append(f"{n:>9} {cell(s['accepted_rate'], 0):>11} {cell(s['e2e_rate'], 0):>13}"
                     f" {cell(s['lab_cpu_ms_per_msg'], 2):>15}"
                     f" {cell(s['pg_cpu_ms_per_msg'], 2):>22}"
                     f" {cell(s['write_lock_waiting'], 2):>27}")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--processes", default="1,2,4", help="layouts: comma-separated 1, 2, 4")
    p.add_argument("--messages", type=int, default=6000, help="messages per measured run")
    p.add_argument("--sessions", type=int, default=20,
                   help=f"concurrent sessions in all (at least {len(SERVERS)})")
    p.add_argument("--repeats", type=int, default=1, help="runs of each layout, in turns")
    p.add_argument("--size", type=int, default=2048, help="message body bytes")
    p.add_argument("--loadgen", action="store_true",
                   help="load with bench/loadgen.py even when smtp-source is installed")
    p.add_argument("--store", choices=KINDS, default="postgresql",
                   help="sqlite: one process (--processes 1) on SQLite, for reference")
    p.add_argument("--store-url", metavar="postgresql://...",
                   help="admin URL of an existing server (default: a throwaway one)")
    p.add_argument("--out", type=Path, help="write the results here as JSON")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    return p


def interrupted(signum: int, _: object) -> NoReturn:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    counts = [int(n) for n in args.processes.split(",") if n]
    for n in counts:
        try:
            layout(n)
        except ValueError as exc:
            p.error(str(exc))
    if args.store == "sqlite" and (counts != [1] or args.store_url):
        p.error("--store sqlite is one process (--processes 1), without --store-url")
    if args.sessions < len(SERVERS) or args.messages < args.sessions:
        p.error(f"--sessions needs at least {len(SERVERS)}, --messages at least --sessions")
    skipped: dict[str, str] = {}
    if any(n > 1 for n in counts) and not supports_servers():
        reason = "this checkout's mailflow run has no --servers"
        skipped = {str(n): reason for n in counts if n > 1}
        counts = [n for n in counts if n == 1]
        log(f"{reason}: only 1 process is measured")
    load = Load(None if args.loadgen else tool("smtp-source"), args.size)
    top = Path(tempfile.mkdtemp(prefix="mailflow-scaleout-"))
    procs = Processes()
    stores = Stores(args.store, args.store_url, keep=args.keep)
    doc: dict[str, Any] = {
        "command": " ".join(["bench/scaleout.py", *(sys.argv[1:] if argv is None else argv)]),
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(), "load": load.name, "store": args.store, "skipped": skipped,
        "runs": []}
    signal.signal(signal.SIGTERM, interrupted)
    try:
        log(f"work directory {top}; load: {load.name}")
        stores.open()
        if args.store == "postgresql" and stores.postmaster is None:
            log("the PostgreSQL server does not run here: its CPU is not measured")
        for rep in range(args.repeats):
            for n in counts:
                doc["runs"].append(measure(args, procs, stores, load,
                                           top / f"r{rep}-{n}p", n))
        doc["summary"] = summarize(doc["runs"])
        doc["machine"]["loadavg_end"] = os.getloadavg()
        print(table(doc["summary"]))
        for count, reason in skipped.items():
            print(f"{count} processes: not measured ({reason})")
        if args.out:
            args.out.write_text(json.dumps(doc, indent=2) + "\n")
            log(f"wrote {args.out}")
        return 0
    finally:
        procs.stop_all()
        stores.close()
        if not args.keep:
            shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
