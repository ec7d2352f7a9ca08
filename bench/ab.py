"""Interleaved A/B of the release drain over the SMTP hop, between source trees.

    git worktree add /tmp/before HEAD~1
    python bench/ab.py --messages 3000 --repeats 3 /tmp/before .

Each tree is put first on PYTHONPATH of ``mailflow run`` (and so of its sender
worker). The trees take turns, so a busy spell on a shared machine hits them all.
Each run parks N messages behind a held move of alice to EX2003-B, as
bench/run.py's drain does, then completes the move. It prints the hop drain's
rate and CPU time per message, the worker's included, and then each tree's median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench  # bench/run.py, beside this file


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("trees", nargs="+", type=Path, help="source trees to compare")
    p.add_argument("--messages", type=int, default=3000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    top = Path(tempfile.mkdtemp(prefix="mailflow-ab-"))
    procs = bench.Processes()
    load = bench.Load(bench.tool("smtp-source"), 2048)
    rates: dict[Path, list[float]] = {tree: [] for tree in args.trees}
    try:
        for repeat in range(args.repeats):
            for number, tree in enumerate(args.trees):
                os.environ["PYTHONPATH"] = str(tree.resolve())
                lab = bench.Lab(procs, top, f"lab-{repeat}-{number}")
                lab.start()
                try:
                    move = lab.hold(bench.ALICE, "EX2003-B")
                    load.run(lab.port, 20, args.messages, bench.ALICE)
                    cpu0, t0 = bench.cpu_seconds(lab.pid), time.perf_counter()
                    lab.api("POST", f"/api/v1/moves/{move}/complete")
                    bench.wait_until(lambda lab=lab: lab.delivered() >= args.messages,
                                     600, "hop drain", interval=0.05)
                    took, cpu1 = time.perf_counter() - t0, bench.cpu_seconds(lab.pid)
                finally:
                    lab.stop()
                rates[tree].append(args.messages / took)
                cpu = "-" if cpu0 is None or cpu1 is None else \
                    f"{1000 * (cpu1 - cpu0) / args.messages:.2f}"
                print(f"{tree}: hop {rates[tree][-1]:.0f} msg/s, {cpu} CPU ms/msg", flush=True)
    finally:
        procs.stop_all()
    for tree, values in rates.items():
        print(f"{tree}: median {statistics.median(values):.0f} msg/s "
              f"({', '.join(f'{v:.0f}' for v in values)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
