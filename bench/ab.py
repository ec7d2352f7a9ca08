"""Interleaved A/B of the hop drain or the accept path, between source trees.

    git worktree add /tmp/before HEAD~1
    python bench/ab.py --messages 3000 --repeats 3 /tmp/before .
    python bench/ab.py --path accept --messages 6000 --repeats 3 /tmp/before .

(or ``python -m bench.ab ...``). In: the trees and the sizes. Out: each run's rate and
CPU time per message (the worker's included) on stdout, then each tree's median.

Each tree is put first on PYTHONPATH of ``mailflow run`` (and so of its sender
worker). The trees take turns, so a busy spell on a shared machine hits them all.
A ``hop`` run is bench/run.py's hop drain: N messages parked behind a held move of
alice to EX2003-B, then the move completed. An ``accept`` run is its 20-session point:
N messages to alice over 20 smtp-source sessions, on a fresh lab warmed up with 200.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from bench.drains import drain
from bench.lab import Lab
from bench.load import Load
from bench.measure import Bench, Settings, point
from bench.procs import Processes, tool
from bench.report import fmt


def accept(bench: Bench, messages: int) -> tuple[float, float | None]:
    """The lab's end-to-end rate at 20 sessions and its CPU ms per message."""
    lab = Lab(bench.procs, bench.top, "lab-accept")
    lab.start()
    try:
        point(bench, lab, 5, 200)
        result = point(bench, lab, 20, messages)
    finally:
        lab.stop()
    return result.e2e_rate or 0.0, result.cpu_ms_per_msg


def hop(bench: Bench, messages: int) -> tuple[float, float | None]:
    """The hop drain's rate and the CPU ms per message of the lab and its worker."""
    result = drain(bench, "hop", messages)
    return result["rate"], result["cpu_ms_per_msg"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("trees", nargs="+", type=Path, help="source trees to compare")
    p.add_argument("--messages", type=int, default=3000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--path", choices=("hop", "accept"), default="hop")
    args = p.parse_args(argv)
    top = Path(tempfile.mkdtemp(prefix="mailflow-ab-"))
    procs = Processes()
    load = Load(tool("smtp-source"), 2048)
    measure = hop if args.path == "hop" else accept
    rates: dict[Path, list[float]] = {tree: [] for tree in args.trees}
    try:
        for repeat in range(args.repeats):
            for number, tree in enumerate(args.trees):
                os.environ["PYTHONPATH"] = str(tree.resolve())
                run_top = top / f"{repeat}-{number}"
                run_top.mkdir()
                rate, cpu = measure(Bench(Settings(), procs, run_top, load), args.messages)
                rates[tree].append(rate)
                print(f"{tree}: {args.path} {rate:.0f} msg/s, {fmt(cpu, 2)} CPU ms/msg",
                      flush=True)
    finally:
        procs.stop_all()
    for tree, values in rates.items():
        print(f"{tree}: median {statistics.median(values):.0f} msg/s "
              f"({', '.join(f'{v:.0f}' for v in values)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
