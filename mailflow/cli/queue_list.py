"""``mailflow queue list``: every queued message of the lab, or of one server, as a table
or in ``postqueue -j``'s JSON lines (``--format postqueue``), so jq recipes work.

In: the command, an optional server and the format. Out: ``GET /api/v1/queues`` and, for
each queue that holds mail, its messages (``GET .../messages``), printed one line per
message in a queue: ``queue_name`` (the lab's queue id: ``deferred``, ``smtp:EX2003-B``
...), ``queue_id``, ``arrival_time`` (whole simulated epoch seconds), ``message_size``,
``forced_expire``, ``sender`` and ``recipients`` (``address``, and ``delay_reason`` once
a delivery attempt failed), with the lab's ``server`` and ``frozen`` added.
docs/tracking-and-exports.md has the recipes.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from mailflow.cli.client import Client, quoted, table, when
from mailflow.limits import PAGE_LIMIT


def add_parser(queue: Any, common: argparse.ArgumentParser) -> None:
    """``list`` under ``mailflow queue``."""
    one = queue.add_parser("list", parents=[common],
                           help="every queued message (postqueue -j with --format postqueue)")
    one.add_argument("server", metavar="SERVER", nargs="?", help="default: every server")
    one.add_argument("--format", choices=("table", "postqueue"), default="table")
    one.set_defaults(func=cmd_queue_list)


def postqueue_line(server: str, queue: str, row: dict[str, Any]) -> dict[str, Any]:
    """One message of a queue as ``postqueue -j`` prints it."""
    reason = row["last_error"]
    recipients = [{"address": rcpt, **({"delay_reason": reason} if reason else {})}
                  for rcpt in row["recipients"]]
    return {"queue_name": queue, "queue_id": row["id"], "arrival_time": int(row["arrival_time"]),
            "message_size": row["size"], "forced_expire": False, "sender": row["sender"],
            "recipients": recipients, "server": server, "frozen": row["frozen"]}


def queued(client: Client, server: str | None) -> list[dict[str, Any]]:
    """The postqueue lines of every queue (of ``server``) that holds mail."""
    lines = []
    for q in client.call("GET", "/api/v1/queues"):
        if not q["message_count"] or (server and q["server"].upper() != server.upper()):
            continue
        path = f"/api/v1/queues/{quoted(q['server'], 'SERVER')}/{quoted(q['queue'], 'QUEUE')}"
        rows = client.call("GET", f"{path}/messages?limit={int(PAGE_LIMIT.high)}")
        lines += [postqueue_line(q["server"], q["queue"], row) for row in rows]
    return lines


def cmd_queue_list(args: argparse.Namespace) -> int:
    lines = queued(Client(args), args.server)
    if args.format == "postqueue":
        for line in lines:
            print(json.dumps(line))
        return 0
    if args.json:
        print(json.dumps(lines, indent=2))
        return 0
    view = [{**line, "arrived": when(line["arrival_time"]),
             "recipients": ", ".join(r["address"] for r in line["recipients"])}
            for line in lines]
    print(table(view, ["server", "queue_name", "queue_id", "sender", "recipients",
                       "message_size", "arrived"]))
    return 0
