"""``mailflow wait``: wait until mail for a mailbox is there, without a polling loop.

In: ``--mailbox ADDRESS`` and the optional ``--from``, ``--subject``, ``--count``,
``--state`` (delivered, the default, or queued) and ``--timeout`` (default 30s, at most
300s). Out: one ``GET /api/v1/messages/wait``, which the lab holds until the mail is there
(docs/http-api.md); the messages printed as a table (JSON with ``--json``) and exit 0, or a
line on stderr and exit 1 when the timeout passes first.
"""

from __future__ import annotations

import argparse
import urllib.parse
from typing import Any

from mailflow.cli import limits
from mailflow.cli.client import Client, CliError, show, table

# The wait route's own bound (mailflow.api.waiting.MAX_TIMEOUT), in real seconds.
MAX_WAIT = 300.0
# How much longer than the wait the HTTP request may take before the CLI gives up on it.
GRACE = 30.0


def wait_timeout(text: str) -> float:
    seconds = limits.duration("--timeout")(text)
    if seconds > MAX_WAIT:
        raise CliError(f"--timeout must be 0 up to {MAX_WAIT:g}s, not {text!r}")
    return seconds


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    wait = sub.add_parser("wait", parents=[common],
                          help="wait until mail for a mailbox is there (exit 1 on timeout)")
    wait.add_argument("--mailbox", required=True, metavar="ADDRESS", help="the recipient")
    wait.add_argument("--from", dest="sender", metavar="TEXT", help="sender contains TEXT")
    wait.add_argument("--subject", metavar="TEXT", help="subject contains TEXT")
    wait.add_argument("--count", type=limits.whole("--count"), default=1,
                      help="how many messages (default 1)")
    wait.add_argument("--state", choices=("delivered", "queued"), default="delivered",
                      help="delivered into the mailbox (default), or only accepted")
    wait.add_argument("--timeout", type=wait_timeout, default=30.0,
                      help="real time to wait, e.g. 30s (default; at most 300s)")
    wait.set_defaults(func=cmd_wait)


def cmd_wait(args: argparse.Namespace) -> int:
    query = {"mailbox": args.mailbox, "count": args.count, "state": args.state,
             "timeout": args.timeout}
    if args.sender:
        query["from"] = args.sender
    if args.subject:
        query["subject"] = args.subject
    path = f"/api/v1/messages/wait?{urllib.parse.urlencode(query)}"
    try:
        rows = Client(args).call("GET", path, timeout=args.timeout + GRACE)
    except CliError as exc:
        if str(exc).startswith("408:"):
            raise CliError(f"timed out after {args.timeout:g}s waiting for {args.count}"
                           f" message(s) for {args.mailbox}", status=1) from None
        raise
    show(args, rows, table(rows, ["id", "sender", "subject"]))
    return 0
