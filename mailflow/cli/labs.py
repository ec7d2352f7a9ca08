"""``mailflow lab``: run a scripted lab, list and show the built-in ones.

In: ``lab run NAME|FILE [--data] [--speed] [--junit FILE] [--keep]``,
``lab list``, ``lab show NAME``. Out: a progress line a step, a verdict, the
exit status (0 only when every expectation held) and optionally JUnit XML.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailflow.cli.client import CliError

# The scripted labs import the lab, aiohttp and aiosmtplib (~0.4 s); `mailflow` builds this
# command's parser for every command it runs, so they (and asyncio) are imported only by
# cmd_lab and _keep, which run it (docs/benchmarks.md, hotspot 8).
if TYPE_CHECKING:
    from mailflow.labs import LabPlan
    from mailflow.labs.runner import Run
    from mailflow.runtime.lab import Lab


def add_parser(sub: Any) -> None:
    # No shared --data here: a lab run starts a fresh lab, in a temporary directory by default.
    lab = sub.add_parser("lab", help="scripted labs with expectations").add_subparsers(
        dest="action", required=True)
    run = lab.add_parser("run", help="run a lab against a fresh lab")
    run.add_argument("lab", metavar="NAME|FILE")
    run.add_argument("--data", help="data directory for the fresh lab (default: a temporary"
                     " one)")
    run.add_argument("--speed", type=float, default=0.0,
                     help="clock speed; 0 (default) lets the lab drive the clock")
    run.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    run.add_argument("--keep", action="store_true", help="leave the lab running at the end")
    run.set_defaults(func=cmd_lab)
    listing = lab.add_parser("list", help="the built-in labs")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=cmd_lab)
    show = lab.add_parser("show", help="print a built-in lab's file")
    show.add_argument("lab", metavar="NAME")
    show.set_defaults(func=cmd_lab)


def cmd_lab(args: argparse.Namespace) -> int:
    import asyncio

    from mailflow import labs

    if args.action == "list":
        rows = [{"name": name, "description": labs.load(name).description}
                for name in labs.builtin_names()]
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            width = max(len(r["name"]) for r in rows)
            print("\n".join(f"{r['name']:<{width}}  {r['description']}" for r in rows))
        return 0
    if args.action == "show":
        if args.lab not in labs.builtin_names():
            raise CliError(f"no built-in lab {args.lab!r}; see 'mailflow lab list'")
        print(labs.builtin_text(args.lab), end="")
        return 0
    if not (args.speed == 0 or 0.01 <= args.speed <= 1_000_000):
        raise CliError(f"--speed must be 0 (the lab drives the clock) or 0.01..1000000,"
                       f" not {args.speed:g}")
    try:
        plan = labs.load(args.lab)
    except labs.LabFileError as exc:
        raise CliError(str(exc)) from None
    data = Path(args.data) if args.data else None
    if data is not None and (data / "mailflow.db").exists():
        raise CliError(f"{data} already holds a lab; a lab run starts from a fresh directory")
    return asyncio.run(_run(plan, args, data))


async def _run(plan: LabPlan, args: argparse.Namespace, data: Path | None) -> int:
    """Run ``plan``; print the verdict as soon as the steps ran (then, with --keep, serve
    until Ctrl-C). SIGINT or SIGTERM before that stops the lab and removes its temporary
    directory: a one-line error, exit 128 + the signal's number."""
    import asyncio
    import signal

    from mailflow.labs.runner import run_lab

    status, received = 0, list[int]()
    main, loop = asyncio.current_task(), asyncio.get_running_loop()

    def interrupt(signum: int) -> None:
        if main is not None and not received:  # once: a second signal must not cut cleanup
            received.append(signum)
            main.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupt, sig)

    async def after(lab: Lab, run: Run) -> None:
        nonlocal status
        status = _verdict(run, args.junit)
        if args.keep:
            await _keep(lab)

    try:
        await run_lab(plan, print, data=data, speed=args.speed, after=after)
    except asyncio.CancelledError:
        if not received:
            raise
        name = signal.Signals(received[0]).name
        kept = f"; its data stays in {data}" if data else " and removed its temporary directory"
        raise CliError(f"stopped by {name} before the lab finished: stopped the lab{kept}",
                       status=128 + received[0]) from None
    return status


def _verdict(run: Run, junit_file: str | None) -> int:
    """Print the verdict of ``run`` (write its JUnit report if asked); the exit status."""
    from mailflow.labs.runner import junit

    if run.error:
        print(f"mailflow lab: a step failed: {run.error}", file=sys.stderr, flush=True)
        return run.error_status
    if junit_file:
        Path(junit_file).write_bytes(junit(run))
    failed = [r for r in run.results if not r.passed]
    verdict = "PASS" if not failed else "FAIL"
    print(f"{verdict}: {len(run.results) - len(failed)}/{len(run.results)} expectations held"
          f" ({run.simulated_seconds / 60:.0f} simulated minutes in {run.real_seconds:.1f} s)")
    for result in failed:
        print(f"  step {result.step.number}: {result.title}: saw {result.seen}")
    sys.stdout.flush()
    return 0 if not failed else 1


async def _keep(lab: Lab) -> None:
    """Serve the lab until SIGINT or SIGTERM (which no longer interrupt, but end this)."""
    from mailflow.cli.signals import stop_event

    print(f"lab kept running: API {lab.http_url}, data {lab.data_dir}; Ctrl-C stops it",
          flush=True)
    await stop_event().wait()
