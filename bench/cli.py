"""The benchmark's command line: the lab side by side with smtp-sink, bare aiosmtpd,
aiosmtpd with one SQLite commit per message, and Postfix delivering to Maildir (issue 8).

    python bench/run.py [--quick] [--out FILE.json] [--plot FILE.png] [options]
    python -m bench [the same options]

In: the options (see ``--help`` and docs/benchmarks.md). Out: the report on stdout, the
results as JSON (``--out``) and the rate-vs-sessions plot (``--plot``); every server it
started is stopped at the end, also on Ctrl-C or SIGTERM. What is measured is said in
docs/benchmarks.md and in the modules that measure it (bench.rates, bench.drains).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import NoReturn, cast

from bench import drains, rates
from bench.lab import Lab
from bench.load import Load
from bench.measure import Bench, Settings
from bench.plot import plot
from bench.postfix import Postfix
from bench.probes import machine
from bench.procs import PY, Processes, log, tool
from bench.report import table
from bench.results import TARGET_DEEP, Config, Results, Target
from bench.store import KINDS, Stores
from bench.systems import AiosmtpdSink, SmtpSink, System
from bench.targets import targets

SYSTEMS = "smtp-sink,bare,sqlite,postfix,lab"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, one run each")
    p.add_argument("--out", type=Path, help="write the results here as JSON")
    p.add_argument("--plot", type=Path, help="write the rate-vs-sessions plot here (PNG)")
    p.add_argument("--systems", default=SYSTEMS, help=f"comma-separated subset of {SYSTEMS}")
    p.add_argument("--sessions", default="1,5,20,50", help="sessions swept for the plot")
    p.add_argument("--messages", type=int, help="messages per 20-session run")
    p.add_argument("--sweep-messages", type=int, help="messages per other sweep point")
    p.add_argument("--repeats", type=int, help="runs of the 20-session point")
    p.add_argument("--latency-messages", type=int, help="messages of the latency probe (0: none)")
    p.add_argument("--drain", help="comma-separated drain sizes (0: none)")
    p.add_argument("--deep", type=int, help="messages parked for the deep-queue reads (0: none)")
    p.add_argument("--deep-clone", type=int,
                   help="then copy the parked rows in SQL up to this many (0: no copy)")
    p.add_argument("--deep-chunk", type=int, default=20_000)
    p.add_argument("--no-deep-release", dest="deep_release", action="store_false",
                   help="do not release the deep queue at the end (local drain, peak RSS)")
    p.add_argument("--read-repeats", type=int, default=5)
    p.add_argument("--idle-seconds", type=float, default=3.0,
                   help="how long the idle lab's CPU is measured with the deep queue")
    p.add_argument("--startup-repeats", type=int, default=5)
    p.add_argument("--size", type=int, default=2048, help="message body bytes (smtp-source -l)")
    p.add_argument("--loadgen", action="store_true",
                   help="load with bench/loadgen.py even when smtp-source is installed")
    p.add_argument("--store", choices=KINDS, default="sqlite",
                   help="where the labs keep their state: SQLite in each data directory, or"
                        " a fresh PostgreSQL database per lab (default sqlite)")
    p.add_argument("--store-url", metavar="postgresql://...",
                   help="with --store postgresql: the admin URL of an existing server, on"
                        " which each lab gets a new database (default: a throwaway server"
                        " started for the run)")
    p.add_argument("--keep", action="store_true",
                   help="keep the work directory (and the databases made on --store-url)")
    p.add_argument("--from-json", type=Path,
                   help="measure nothing: print the table (and --plot) of an earlier --out")
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser()
    args = p.parse_args(argv)
    quick = args.quick
    sqlite = args.store == "sqlite"
    if args.store_url and sqlite:
        p.error("--store-url goes with --store postgresql")
    if args.deep_clone and not sqlite:
        p.error("--deep-clone copies rows in SQLite (stores.bulk): it needs --store sqlite")
    defaults = {
        "messages": 1_000 if quick else 6_000,
        "sweep_messages": 500 if quick else 3_000,
        "repeats": 1 if quick else 3,
        "latency_messages": 300 if quick else 2_000,
        "drain": "500" if quick else "3000,10000",
        "deep": 2_000 if quick else 50_000,
        "deep_clone": 0 if quick or not sqlite else TARGET_DEEP,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if quick:
        args.idle_seconds = min(args.idle_seconds, 1.0)
        args.read_repeats = min(args.read_repeats, 3)
        args.startup_repeats = min(args.startup_repeats, 3)
    args.sessions = [int(s) for s in args.sessions.split(",") if s]
    if 20 not in args.sessions:
        args.sessions.append(20)
    args.drain = [int(s) for s in str(args.drain).split(",") if s and int(s) > 0]
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    return args


def settings_of(args: argparse.Namespace) -> Settings:
    return Settings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Settings)})


def config_of(args: argparse.Namespace, load: Load) -> Config:
    return {"quick": args.quick, "messages": args.messages,
            "sweep_messages": args.sweep_messages, "repeats": args.repeats,
            "sessions": args.sessions, "size": args.size, "load": load.name,
            "latency_messages": args.latency_messages, "drain": args.drain,
            "deep": args.deep, "deep_clone": args.deep_clone, "systems": args.systems,
            "store": args.store}


def systems_of(names: list[str], bench: Bench, smtp_source: str | None) -> list[System]:
    """The systems asked for that this machine has, in the order they are measured."""
    procs, top = bench.procs, bench.top
    systems: list[System] = []
    if "smtp-sink" in names:
        sink = tool("smtp-sink")
        if sink and smtp_source:
            systems.append(SmtpSink(procs, top, sink))
        else:
            log("smtp-sink (or smtp-source) is not installed: no ceiling measured")
    systems += [AiosmtpdSink(procs, top, mode) for mode in ("bare", "sqlite") if mode in names]
    if "postfix" in names:
        postfix, postconf = tool("postfix"), tool("postconf")
        usable = os.geteuid() == 0 and Path("/etc/postfix/master.cf").exists()
        if postfix and postconf and usable:
            systems.append(Postfix(procs, postfix, postconf))
        else:
            log("Postfix is not installed (or not root): Postfix is left out")
    if "lab" in names:
        systems.append(Lab(procs, top, "lab-rates", store=bench.stores.new()))
    return systems


def measure_systems(bench: Bench, results: Results, systems: list[System]) -> None:
    """Rates and latency of every system, started together and stopped after."""
    for system in systems:
        system.start()
        log(f"started {system.name} on port {system.port}")
    results["rates"] = rates.rates(bench, systems)
    if bench.settings.latency_messages:
        results["latency"] = rates.latency(bench, systems)
    for system in systems:
        if isinstance(system, Lab):
            results["lab_rates_vm_mb"] = system.vm()
            results["lab_rates_startup_s"] = system.startups
    for system in systems:
        system.stop()


def measure_lab(bench: Bench, results: Results, args: argparse.Namespace) -> None:
    """The lab alone: drains, the deep queue, startup (every lab start of the run counted)."""
    results["drain"] = [drains.drain(bench, mode, n) for n in args.drain
                        for mode in ("local", "hop")]
    others = [*results.get("lab_rates_startup_s", []),
              *(d["startup_s"] for d in results["drain"])]
    if args.deep:
        deep = results["deep"] = drains.deep(bench, args.deep, args.deep_clone)
        others += [deep["startup_empty_s"], deep["restart_s"]]
        if "clone" in deep:
            others.append(deep["clone"]["restart_s"])
    results["startup"] = drains.startup(bench, others)


def report(results: Results, checked: list[Target], args: argparse.Namespace) -> None:
    """The table on stdout, the JSON and the plot where asked."""
    print(table(results, checked))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        log(f"wrote {args.out}")
    if args.plot and "rates" in results and plot(results, args.plot):
        log(f"wrote {args.plot}")


def interrupted(signum: int, _: object) -> NoReturn:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        earlier = cast(Results, json.loads(args.from_json.read_text()))
        report(earlier, targets(earlier), argparse.Namespace(out=None, plot=args.plot))
        return 0
    smtp_source = None if args.loadgen else tool("smtp-source")
    load = Load(smtp_source, args.size)
    top = Path(tempfile.mkdtemp(prefix="mailflow-bench-"))
    procs = Processes()
    results: Results = {
        "command": " ".join([Path(PY).name, *sys.argv]) if argv is None else
        " ".join(["bench/run.py", *argv]),
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(), "config": config_of(args, load),
    }
    stores = Stores(args.store, args.store_url, keep=args.keep)
    bench = Bench(settings_of(args), procs, top, load, stores)
    signal.signal(signal.SIGTERM, interrupted)
    t_start = time.perf_counter()
    try:
        log(f"work directory {top}; load: {load.name}; store: {args.store}")
        stores.open()
        measure_systems(bench, results, systems_of(args.systems, bench, smtp_source))
        if "lab" in args.systems:
            measure_lab(bench, results, args)
        checked = targets(results)
        results["targets"] = [t.as_json() for t in checked]
        results["elapsed_s"] = time.perf_counter() - t_start
        results["machine"]["loadavg_end"] = os.getloadavg()
        report(results, checked, args)
        return 0
    finally:
        procs.stop_all()
        stores.close()  # after the labs: the server outlives its clients
        if not args.keep:
            shutil.rmtree(top, ignore_errors=True)
        else:
            log(f"kept {top}")
