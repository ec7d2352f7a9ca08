"""``mailflow events``: the emulated event log, once or followed (``--follow``).

In: the command and its flags. Out: ``GET /api/v1/events`` printed a line an
event (JSON lines with ``--json``); ``--follow`` polls the lab once a second.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from mailflow.cli.client import Client, when


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    events = sub.add_parser("events", parents=[common], help="the emulated event log")
    events.add_argument("--follow", action="store_true", help="keep printing new events")
    events.set_defaults(func=cmd_events)


def cmd_events(args: argparse.Namespace) -> int:
    client = Client(args)
    after = 0
    while True:
        rows = client.call("GET", f"/api/v1/events?after={after}")
        if args.json:
            for row in rows:
                print(json.dumps(row), flush=True)
        else:
            for row in rows:
                print(f"{when(row['sim_time'])}  {row['server']:<10} {row['source']:<14}"
                      f" {row['event_id']:>5} {row['level']:<11} {row['text']}", flush=True)
        after = rows[-1]["id"] if rows else after
        if not args.follow:
            return 0
        time.sleep(1)  # --follow polls the lab once a second
