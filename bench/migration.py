"""The migration benchmark of issue 22: a large organization, mailboxes moved in batches
while background mail arrives, on the fastest clock the lab keeps up with.

Usage: python bench/migration.py [--servers 200] [--mailboxes 100000] [--sites 10]
       [--moves 10000] [--batch 25] [--parallel 8] [--rate 1] [--sample 0.05] [--step 300]
       [--sessions 16] [--items 0] [--seed 22] [--budget SECONDS] [--out FILE] [--quick]

In: the command line (defaults: the issue's full size; ``--quick`` a tiny one for the smoke
test). Out: a table on stdout and, with ``--out``, the JSON of every measure; exit status 0
when every asked move completed, the audit is clean and mail was delivered, 1 otherwise.

The lab runs in a process of its own (``bench.migration_lab``), so its RSS and CPU are its
own, on a stopped clock the benchmark advances ``--step`` simulated seconds at a time, as
fast as the lab takes it: the simulated hours per real minute are the fastest clock this
lab keeps up with under this load. Measured: startup (process start to every endpoint and
the API listening, with the lab's own split), simulated hours per real minute, the lab's
peak RSS (VmHWM, /proc) and CPU seconds, mail sent and delivered, moves completed, the
audit. What the run is (``bench.migration_run``) and what is sent (``bench.migration_mail``)
are described there; docs/benchmarks.md, run U, has the results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.migration_run import LabProcess, Settings, run
from bench.probes import machine
from bench.procs import PY, Processes, log, wait_until

QUICK = {"servers": 6, "mailboxes": 300, "sites": 3, "moves": 50, "batch": 25, "parallel": 2,
         "sample": 1.0, "rate": 4.0}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--servers", type=int, default=200)
    p.add_argument("--mailboxes", type=int, default=100_000)
    p.add_argument("--sites", type=int, default=10)
    p.add_argument("--moves", type=int, default=10_000, help="mailboxes moved")
    p.add_argument("--batch", type=int, default=25, help="moves per batch (KB 328810)")
    p.add_argument("--parallel", type=int, default=8, help="batches running at once")
    p.add_argument("--rate", type=float, default=1.0,
                   help="background messages per mailbox per simulated hour")
    p.add_argument("--sample", type=float, default=0.05,
                   help="share of the background mail actually sent (mailboxes being moved"
                   " always get all of theirs)")
    p.add_argument("--step", type=float, default=300.0, help="simulated seconds per step")
    p.add_argument("--sessions", type=int, default=16, help="SMTP sessions at once")
    p.add_argument("--items", type=int, default=0, help="items in each mailbox at start")
    p.add_argument("--seed", type=int, default=22)
    p.add_argument("--budget", type=float, default=25 * 60.0,
                   help="real seconds the migration may take before it is cut short")
    p.add_argument("--work", help="directory for the lab's data (default: a temporary one)")
    p.add_argument("--out", help="write the results as JSON here")
    p.add_argument("--quick", action="store_true", help="a tiny organization (smoke test)")
    args = p.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            if p.get_default(key) == getattr(args, key):  # a flag given wins over --quick
                setattr(args, key, value)
    if not 0 < args.moves <= args.mailboxes or not 0 <= args.sample <= 1 or args.batch < 1:
        p.error("need 0 < --moves <= --mailboxes, 0 <= --sample <= 1, --batch >= 1")
    return args


def start_lab(procs: Processes, args: argparse.Namespace, work: Path
              ) -> tuple[LabProcess, dict[str, Any]]:
    """Start the lab process; returns it and its startup: seconds from the process start to
    /healthz answering with every endpoint listening, and the lab's own split of them."""
    data = work / "data"
    logfile = work / "lab.log"
    argv = [PY, "-m", "bench.migration_lab", "--servers", str(args.servers),
            "--mailboxes", str(args.mailboxes), "--sites", str(args.sites),
            "--items", str(args.items), "--data", str(data)]
    t0 = time.perf_counter()
    proc = procs.spawn(argv, logfile, cwd=work)

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"the lab exited {proc.returncode}; see {logfile}")
        return logfile.exists() and '"lab_start_s"' in logfile.read_text()

    wait_until(ready, 600, "the lab's endpoints", interval=0.01)
    info = json.loads((data / "lab.json").read_text())
    with urllib.request.urlopen(f"{info['api']}/healthz", timeout=30) as r:
        if r.status != 200:
            raise RuntimeError(f"/healthz answered {r.status}")
    startup = time.perf_counter() - t0
    split = next(json.loads(line) for line in logfile.read_text().splitlines()
                 if line.startswith("{") and "lab_start_s" in line)
    lab = LabProcess(pid=proc.pid, api=str(info["api"]),
                     token=(data / "api-token").read_text().strip(),
                     ports={name: int(ep[1]) for name, ep in info["endpoints"].items()})
    return lab, {"seconds": startup, **split}


def table(doc: dict[str, Any]) -> str:
    """The results as markdown rows."""
    r, s = doc["run"], doc["settings"]
    audit = r["audit"]
    rows = [
        ("organization", f"{s['servers']} servers (Exchange 2003) in {s['sites']} sites,"
                         f" {s['mailboxes']:,} mailboxes"),
        ("startup (process start to endpoints and API up)",
         f"{doc['startup']['seconds']:.1f} s (Lab.start {doc['startup']['lab_start_s']:.1f} s)"),
        ("moves completed / asked", f"{r['moves']['completed']:,} / {s['moves']:,}"
                                    f" ({r['moves']['failed']} failed), batches of {s['batch']},"
                                    f" {s['parallel']} at once"),
        ("simulated time", f"{r['sim_hours']:.2f} h in {r['steps']} steps of {s['step']:g} s"),
        ("real time of the run", f"{r['real_s']:.0f} s"),
        ("simulated hours per real minute", f"{r['sim_hours_per_real_minute']:.2f}"),
        ("background mail", f"{r['mail']['sent']:,} sent ({r['mail']['refused']} refused) of"
                            f" {r['mail']['arrivals_at_full_rate']:,} arrivals at"
                            f" {s['rate']:g}/mailbox/h (sample {s['sample']:g})"),
        ("audit", f"{'clean' if audit['clean'] else 'FAILED'}: accepted {audit['accepted']:,},"
                  f" delivered {audit['delivered']:,}, queued"
                  f" {sum(audit['queued'].values()):,} ({r['audit_s']:.1f} s)"),
        ("lab peak RSS (VmHWM)", f"{r['rss_mb']['VmHWM']:.0f} MB"),
        ("lab CPU", f"{r['lab_cpu_s']:.0f} s"),
        ("phases (real s)", ", ".join(f"{k[:-2]} {v:.0f}" for k, v in r["phases_s"].items())),
    ]
    return "\n".join(["| measure | value |", "| --- | --- |",
                      *(f"| {k} | {v} |" for k, v in rows)])


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    settings = Settings(args.servers, args.mailboxes, args.sites, args.moves, args.batch,
                        args.parallel, args.rate, args.sample, args.step, args.sessions,
                        args.items, args.seed)
    procs = Processes()
    with tempfile.TemporaryDirectory(prefix="migbench-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        try:
            log(f"starting a lab of {args.servers} servers, {args.mailboxes} mailboxes")
            lab, startup = start_lab(procs, args, work)
            log(f"lab up in {startup['seconds']:.1f} s; migrating {args.moves} mailboxes")
            result = asyncio.run(run(settings, lab, args.budget))
        finally:
            procs.stop_all()
    doc = {"settings": vars(settings), "startup": startup, "run": result,
           "machine": machine(), "argv": sys.argv[1:] if argv is None else argv}
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(table(doc))
    ok = (result["moves"]["completed"] == args.moves and result["audit"]["clean"]
          and result["audit"]["delivered"] > 0 and not result["cut_short"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
