"""``mailflow tracking``: the message tracking log (Get-MessageTrackingLog's fields).

In: the command and its filters. Out: ``GET /api/v1/tracking`` printed as CSV with
Exchange's column names (``--format csv``, the default) or as a JSON array
(``--format json`` or ``--json``).
"""

from __future__ import annotations

import argparse
import json
import urllib.parse
from typing import Any

from mailflow.cli import limits
from mailflow.cli.client import Client
from stores.tracking import EVENT_IDS, csv_text

FILTERS = ("message", "sender", "recipient", "server", "event_id", "start", "end", "limit")


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    cmd = sub.add_parser("tracking", parents=[common],
                         help="the message tracking log (Get-MessageTrackingLog fields)")
    cmd.add_argument("--message", help="a queue id (InternalMessageId)")
    cmd.add_argument("--sender", help="the envelope sender")
    cmd.add_argument("--recipient", help="one recipient")
    cmd.add_argument("--server", help="where the event happened")
    cmd.add_argument("--event-id", dest="event_id", choices=EVENT_IDS, type=str.upper)
    cmd.add_argument("--start", help="simulated epoch seconds, from")
    cmd.add_argument("--end", help="simulated epoch seconds, to")
    cmd.add_argument("--limit", type=limits.whole("--limit"),
                     help="at most this many rows (default 1000)")
    cmd.add_argument("--format", choices=("csv", "json"), default="csv")
    cmd.set_defaults(func=cmd_tracking)


def cmd_tracking(args: argparse.Namespace) -> int:
    query = {name: getattr(args, name) for name in FILTERS if getattr(args, name) is not None}
    rows = Client(args).call("GET", f"/api/v1/tracking?{urllib.parse.urlencode(query)}")
    if args.json or args.format == "json":
        print(json.dumps(rows, indent=2))
    else:
        print(csv_text(rows), end="")
    return 0
