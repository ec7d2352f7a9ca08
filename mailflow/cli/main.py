"""The ``mailflow`` command: arguments in, a running lab or the API's answers printed out.

``run`` starts a lab in this process. Every other command finds the running
lab through its data directory (``--data``, ``MAILFLOW_DATA``, default
``./mailflow-data``: the lab writes its API address to ``lab.json`` and its
token to ``api-token`` there) or an explicit ``--api URL``, and prints a
table, or JSON with ``--json``. Each command group is a module of
``mailflow.cli`` with its own ``add_parser``; this one assembles the parser
and runs the command.
"""

from __future__ import annotations

import argparse
import os
import sys

from mailflow.cli import (
    audit,
    clock,
    events,
    labs,
    mailboxes,
    moves,
    organization,
    queues,
    run,
    send,
    status,
)
from mailflow.cli.client import DEFAULT_DATA, CliError

# Only what the HTTP-client commands need is imported by the command modules (~0.1 s). The
# lab (`run`), asyncio and aiosmtplib (`send`) and the scripted labs (`lab`) would add ~0.4 s
# to every command, `mailflow queues` and `--help` included, so the functions that run those
# commands import them (docs/benchmarks.md, hotspot 8).


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", default=os.environ.get("MAILFLOW_DATA", DEFAULT_DATA),
                        help="the lab's data directory (default $MAILFLOW_DATA or ./mailflow-data)")
    common.add_argument("--api", help="talk to the lab at this URL instead")
    common.add_argument("--json", action="store_true", help="print JSON")
    parser = argparse.ArgumentParser(prog="mailflow", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    # In the order `mailflow --help` lists them.
    run.add_parser(sub, common)
    status.add_parser(sub, common)
    queues.add_list_parser(sub, common)
    audit.add_parser(sub, common)
    moves.add_parser(sub, common)
    queues.add_parser(sub, common)
    labs.add_parser(sub)
    mailboxes.add_parser(sub, common)
    clock.add_parser(sub, common)
    organization.add_parser(sub, common)
    events.add_parser(sub, common)
    send.add_parser(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except CliError as exc:
        print(f"mailflow {args.command}: {exc}", file=sys.stderr)
        return exc.status


if __name__ == "__main__":
    sys.exit(main())
