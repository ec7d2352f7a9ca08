"""Profile the lab's accept and release paths with py-spy (sampling, from outside).

    python bench/profile_lab.py [--messages N] [--drain N] [--idle-deep M] [--out DIR]
    (or python -m bench.profile_lab ...)

Starts one lab (``mailflow run``, as bench/run.py does) and records it with
``py-spy record --threads --subprocesses --format raw`` (the sender worker too)
during each phase, separately:

* ``accept``: N messages over 20 sessions to alice (smtp-source, or bench/loadgen.py),
  accepted and delivered into her mailbox;
* ``park``: N messages to bob while a held move of his parks them in ``deferred``;
* ``release-hop``: that move completed: the N relayed over SMTP to EX2003-B;
* ``park-local`` / ``release-local``: the same for carol (EX2003-B), her move then
  failed, so the N are delivered where she is;
* with ``--idle-deep M``: ``idle-deep`` (6 s of an idle lab) and ``metrics-deep`` (five
  scrapes) with M parked (copied in SQL from 2,000 parked over SMTP).

Then ``mailflow queues`` and ``mailflow --help`` are timed with ``-X importtime``.
For each phase DIR gets the collapsed stacks (``PHASE.txt``, for flamegraph.pl or
speedscope) and a summary (``PHASE.summary.txt``): samples by thread, the hottest
functions by self time, and by inclusive time (all code, then the project's own).
py-spy must be installed (pip install py-spy) and allowed to ptrace (root here).

In: the sizes and DIR. Out: DIR's files, and every summary printed on stdout.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.lab import ALICE, Lab
from bench.load import Load
from bench.procs import Processes, log, tool, wait_until
from stores.bulk import amplify_queue

# py-spy names files relative to sys.path; the entry point's frames say nothing.
PROJECT = re.compile(r"\((mailflow|routing|stores)/(?:[^/]+/)*[^/]+\.py")
ENTRY = re.compile(r"\(mailflow/(__main__|cli/[^/]+)\.py")


def record(pid: int, out: Path, rate: int) -> subprocess.Popen[bytes]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    proc = subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--rate", str(rate), "--threads", "--subprocesses",
         "--format", "raw", "--output", str(out), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    time.sleep(1.0)  # py-spy attaches
    return proc


def finish(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def parse(path: Path) -> list[tuple[list[str], int]]:
    stacks: list[tuple[list[str], int]] = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def func(frame: str) -> str:
    """``name (file:line)`` without the line, and the path shortened."""
    m = re.match(r"(.*) \((.*?)(?::\d+)?\)$", frame)
    if not m:
        return frame
    name, file = m.groups()
    file = re.sub(r".*/site-packages/", "", file)
    file = re.sub(r".*/lib/python3\.\d+/", "", file)
    file = re.sub(r".*/work/main/", "", file)
    return f"{name} ({file})"


def summarize(path: Path, wall: float, top: int = 25) -> str:
    stacks = parse(path)
    total = sum(c for _, c in stacks) or 1
    threads: collections.Counter[str] = collections.Counter()
    self_: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    proj: collections.Counter[str] = collections.Counter()
    lines: collections.Counter[str] = collections.Counter()
    for frames, count in stacks:
        thread = frames[0] if frames and frames[0].startswith(("thread", "process")) else "?"
        if thread.startswith("process"):
            thread = frames[1] if len(frames) > 1 else thread
        threads[re.sub(r" \(0x[0-9a-f]+\)", "", thread)] += count
        code = [f for f in frames if "(" in f and not f.startswith(("thread", "process"))]
        if not code:
            continue
        self_[func(code[-1])] += count
        lines[re.sub(r".*/(site-packages|python3\.\d+)/", "", code[-1])] += count
        seen = {func(f) for f in code}
        for f in seen:
            incl[f] += count
        for f in {func(f) for f in code if PROJECT.search(f) and not ENTRY.search(f)}:
            proj[f] += count
    out = [f"{path.name}: {total} samples over {wall:.1f} s wall"
           " (samples of threads on CPU; idle threads are not sampled)", "", "by thread:"]
    out += [f"  {c:7d} {100 * c / total:5.1f}%  {t}" for t, c in threads.most_common()]
    for title, counter in (("self time (leaf function)", self_),
                           ("self time by line", lines),
                           ("inclusive time, all code", incl),
                           ("inclusive time, mailflow/routing/stores only", proj)):
        out += ["", f"{title}:"]
        out += [f"  {c:7d} {100 * c / total:5.1f}%  {f}" for f, c in counter.most_common(top)]
    return "\n".join(out) + "\n"


def importtime(argv: list[str], cwd: Path) -> str:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-X", "importtime", *argv], capture_output=True,
                          text=True, cwd=cwd, timeout=120)
    wall = time.perf_counter() - t0
    rows = []
    for line in done.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m:
            rows.append((int(m.group(2)), len(m.group(3)), m.group(4)))
    total = sum(us for us, depth, _ in rows if depth == 1)
    lines = [f"{' '.join(argv)}: {wall:.2f} s wall (with -X importtime),"
             f" top-level imports {total / 1e6:.2f} s", "largest cumulative imports:"]
    for us, depth, name in sorted(rows, reverse=True)[:20]:
        lines.append(f"  {us / 1000:8.1f} ms  {'  ' * (depth - 1)}{name}")
    return "\n".join(lines) + "\n"


class Phases:
    """Each phase of one lab recorded by py-spy, its collapsed stacks and summary in ``out``."""

    def __init__(self, lab: Lab, out: Path, rate: int) -> None:
        self.lab, self.out, self.rate = lab, out, rate
        self.walls: list[tuple[str, float]] = []

    def __call__(self, name: str, work: Callable[[], object]) -> None:
        spy = record(self.lab.pid or 0, self.out / f"{name}.txt", self.rate)
        t0 = time.perf_counter()
        try:
            work()
        finally:
            wall = time.perf_counter() - t0
            finish(spy)
        self.walls.append((name, wall))
        summary = summarize(self.out / f"{name}.txt", wall)
        (self.out / f"{name}.summary.txt").write_text(summary)
        log(f"{name}: {wall:.1f} s")


def moves(phase: Phases, load: Load, messages: int, drain: int) -> None:
    """accept (``messages`` to alice), then ``drain`` parked and released over the hop
    (bob's move completed) and locally (carol's move failed)."""
    lab = phase.lab
    phase("accept", lambda: load.run(lab.port, 20, messages, ALICE))

    def released(address: str) -> bool:
        return int(lab.mailbox(address)["message_count"]) >= drain

    move = lab.hold("bob@contoso.test", "EX2003-B")
    phase("park", lambda: load.run(lab.port, 20, drain, "bob@contoso.test"))

    def release_hop() -> None:
        lab.api("POST", f"/api/v1/moves/{move}/complete")
        wait_until(lambda: released("bob@contoso.test"), 600, "hop drain", 0.02)

    phase("release-hop", release_hop)
    move2 = lab.hold("carol@contoso.test", "EX2003-A")
    port_b = int(lab.info["endpoints"]["EX2003-B"][1])
    phase("park-local", lambda: load.run(port_b, 20, drain, "carol@contoso.test"))

    def release_local() -> None:
        lab.api("POST", f"/api/v1/moves/{move2}/fail")
        wait_until(lambda: released("carol@contoso.test"), 600, "local drain", 0.02)

    phase("release-local", release_local)


def idle_deep(phase: Phases, load: Load, queued: int) -> None:
    """A deep queue: some mail parked behind a held move, copied in SQL up to ``queued``
    (bench/run.py's --deep-clone), the lab restarted; then the idle lab and /metrics."""
    lab = phase.lab
    lab.hold(ALICE, "EX2003-B")
    load.run(lab.port, 20, min(2000, queued), ALICE)
    lab.stop()
    total = amplify_queue(lab.data / "mailflow.db", queued)
    lab.start()
    log(f"{total} queued; restarted in {lab.startups[-1]:.2f} s")
    time.sleep(1.0)
    phase("idle-deep", lambda: time.sleep(6.0))
    phase("metrics-deep", lambda: [lab.timed_get("/metrics", auth=False) for _ in range(5)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--messages", type=int, default=5000)
    p.add_argument("--drain", type=int, default=3000)
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--out", type=Path, default=Path("bench-profile"))
    p.add_argument("--idle-deep", type=int, default=0,
                   help="also profile the idle lab and /metrics with this many queued")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    top = Path(tempfile.mkdtemp(prefix="mailflow-profile-"))
    procs = Processes()
    load = Load(None if os.environ.get("BENCH_LOADGEN") else tool("smtp-source"), 2048)
    try:
        lab = Lab(procs, top, "lab")
        lab.start()
        phase = Phases(lab, args.out, args.rate)
        moves(phase, load, args.messages, args.drain)
        if args.idle_deep:
            idle_deep(phase, load, args.idle_deep)
        text = importtime(["-m", "mailflow", "queues", "--data", str(lab.data)], lab.dir)
        text += "\n" + importtime(["-m", "mailflow", "--help"], lab.dir)
        (args.out / "cli-importtime.txt").write_text(text)
        lab.stop()
        for name, wall in phase.walls:
            print(f"== {name} ({wall:.1f} s)")
            print((args.out / f"{name}.summary.txt").read_text())
        print(text)
        return 0
    finally:
        procs.stop_all()
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
