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

import mailflow
from mailflow.cli import (
    audit,
    clock,
    databases,
    directory,
    events,
    faults,
    labs,
    limits,
    mailboxes,
    moves,
    organization,
    queues,
    run,
    send,
    status,
    tracking,
    wait,
)
from mailflow.cli.client import DEFAULT_DATA, CliError

# Only what the HTTP-client commands need is imported by the command modules (~0.1 s). The
# lab (`run`), asyncio and aiosmtplib (`send`) and the scripted labs (`lab`) would add ~0.4 s
# to every command, `mailflow queues` and `--help` included, so the functions that run those
# commands import them (docs/benchmarks.md, hotspot 8).


# What `mailflow --help` says first: plain text (the module docstring is reST for the docs).
DESCRIPTION = ("mailflow: emulate Exchange mail flow while mailboxes move. 'mailflow run'"
               " starts a lab; every other command talks to a running lab and prints its"
               " answer as a table, or JSON with --json.")


def build_parser() -> argparse.ArgumentParser:
    """The whole ``mailflow`` parser: every command group's subparser under one program."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", default=os.environ.get("MAILFLOW_DATA", DEFAULT_DATA),
                        help="the lab's data directory (default $MAILFLOW_DATA or ./mailflow-data)")
    common.add_argument("--api", help="talk to the lab at this URL instead")
    common.add_argument("--json", action="store_true", help="print JSON")
    parser = argparse.ArgumentParser(prog="mailflow", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"mailflow {mailflow.__version__}")
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
    tracking.add_parser(sub, common)
    faults.add_parser(sub, common)
    wait.add_parser(sub, common)
    databases.add_parser(sub, common)
    directory.add_parser(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command line (``sys.argv[1:]`` by default); returns the exit status. A bad
    value (out of range, not a number) or any ``CliError`` is one line on stderr."""
    argv = limits.join_negative(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except CliError as exc:  # raised by the ``type`` of a numeric option (mailflow.cli.limits)
        # The command is the first word: the top-level parser has no option taking a value.
        command = next((a for a in argv if not a.startswith("-")), "")
        print(f"mailflow {command}: {exc}", file=sys.stderr)
        return exc.status
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
