"""Interleaved A/B of the hop drain or the accept path, between source trees.

    git worktree add /tmp/before HEAD~1
    python bench/ab.py --messages 3000 --repeats 3 /tmp/before .
    python bench/ab.py --path accept --messages 6000 --repeats 3 /tmp/before .

Each tree is put first on PYTHONPATH of ``mailflow run`` (and so of its sender
worker). The trees take turns, so a busy spell on a shared machine hits them all.
A ``hop`` run is bench/run.py's hop drain: N messages parked behind a held move of
alice to EX2003-B, then the move completed. An ``accept`` run is its 20-session point:
N messages to alice over 20 smtp-source sessions, on a fresh lab warmed up with 200.
It prints each run's rate and CPU time per message (the worker's included), and then
each tree's median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench  # bench/run.py, beside this file


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("trees", nargs="+", type=Path, help="source trees to compare")
    p.add_argument("--messages", type=int, default=3000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--path", choices=("hop", "accept"), default="hop")
    args = p.parse_args(argv)
    top = Path(tempfile.mkdtemp(prefix="mailflow-ab-"))
    procs = bench.Processes()
    load = bench.Load(bench.tool("smtp-source"), 2048)
    rates: dict[Path, list[float]] = {tree: [] for tree in args.trees}
    try:
        for repeat in range(args.repeats):
            for number, tree in enumerate(args.trees):
                os.environ["PYTHONPATH"] = str(tree.resolve())
                run_top = top / f"{repeat}-{number}"
                run_top.mkdir()
                runner = bench.Bench(args, procs, run_top, load)
                if args.path == "hop":
                    result = runner.drain("hop", args.messages)
                else:
                    result = accept(runner, procs, run_top, args.messages)
                rates[tree].append(result["rate"])
                print(f"{tree}: {args.path} {result['rate']:.0f} msg/s, "
                      f"{bench.fmt(result['cpu_ms_per_msg'], 2)} CPU ms/msg", flush=True)
    finally:
        procs.stop_all()
    for tree, values in rates.items():
        print(f"{tree}: median {statistics.median(values):.0f} msg/s "
              f"({', '.join(f'{v:.0f}' for v in values)})")
    return 0


def accept(runner: bench.Bench, procs: bench.Processes, top: Path, messages: int
           ) -> dict[str, Any]:
    lab = bench.Lab(procs, top, "lab-accept")
    lab.start()
    try:
        runner.point(lab, 5, 200)
        result = runner.point(lab, 20, messages)
    finally:
        lab.stop()
    return {"rate": result["e2e_rate"], "cpu_ms_per_msg": result.get("cpu_ms_per_msg")}


if __name__ == "__main__":
    sys.exit(main())
