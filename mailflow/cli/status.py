"""``mailflow status``: the lab at a glance.

In: the command and the common flags. Out: ``GET /api/v1/status`` printed: the
scenario and clock, each SMTP endpoint, the mailboxes in transit, the queues and
the moves (JSON with ``--json``).
"""

from __future__ import annotations

import argparse
from typing import Any

from mailflow.cli.client import Client, show, when


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    sub.add_parser("status", parents=[common], help="servers, in-transit mailboxes, queues"
                   ).set_defaults(func=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    doc = Client(args).call("GET", "/api/v1/status")
    lines = [f"scenario {doc['scenario']}   clock {when(doc['clock'])}   API {doc['api']}", ""]
    lines += [f"  {name:<12} smtp://{h}:{p}" for name, (h, p) in doc["endpoints"].items()]
    lines += ["", "in transit: " + (", ".join(
        f"{r['mailbox']} ({r['server']})" for r in doc["in_transit"]) or "none")]
    lines += [f"queued: {doc['queued']}"] + [f"  {k}: {v}" for k, v in doc["queues"].items()]
    lines += ["moves: " + (", ".join(f"{k} {v}" for k, v in doc["moves"].items()) or "none")]
    show(args, doc, "\n".join(lines))
    return 0
