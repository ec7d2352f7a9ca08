"""``mailflow clock``: show the lab clock, or advance it (``--advance 30m``).

In: the command and its flag. Out: ``GET /api/v1/clock`` or ``POST
/api/v1/clock/advance``, printed as the simulated time and speed.
"""

from __future__ import annotations

import argparse
from typing import Any

from mailflow.cli import limits
from mailflow.cli.client import Client, show, when


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    clock = sub.add_parser("clock", parents=[common], help="show or advance the lab clock")
    clock.add_argument("--advance", metavar="DURATION",
                       type=limits.duration("--advance"),
                       help="e.g. 30m: run what falls due (forward only, 0 up to 10 years)")
    clock.set_defaults(func=cmd_clock)


def cmd_clock(args: argparse.Namespace) -> int:
    client = Client(args)
    if args.advance is not None:
        doc = client.call("POST", "/api/v1/clock/advance", {"seconds": args.advance})
    else:
        doc = client.call("GET", "/api/v1/clock")
    show(args, doc, f"{when(doc['now'])} (x{doc['speed']:g})")
    return 0
