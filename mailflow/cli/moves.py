"""``mailflow move``: start and drive mailbox moves from the command line.

In: the move subcommands and their flags. Out: calls to ``/api/v1/moves`` and
the move shown as fields with its history, or JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import secrets
import sys
from typing import Any

from mailflow.cli import limits, waiting
from mailflow.cli.client import Client, CliError, fields, quoted, show, table, when

ACTIONS = ("show", "complete", "fail", "suspend", "resume", "remove", "report")


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    move = sub.add_parser("move", help="start and drive mailbox moves").add_subparsers(
        dest="action", required=True)
    start = move.add_parser("start", parents=[common], help="move one or more mailboxes")
    start.add_argument("addresses", nargs="+", metavar="ADDRESS")
    start.add_argument("--to", required=True, metavar="SERVER", help="target server")
    start.add_argument("--hold", action="store_true",
                       help="keep the mailbox in transit after the copy until complete or fail")
    start.add_argument("--at", help="start at an ISO time or +DURATION of simulated time")
    start.add_argument("--engine", choices=["wizard2003", "movemailbox2007", "mrs2010"],
                       help="default: the tool of the source and target versions")
    start.add_argument("--bad-items", type=limits.whole("--bad-items"), default=0,
                       help="corrupt items to inject (0..100000)")
    start.add_argument("--bad-item-limit", type=limits.whole("--bad-item-limit"),
                       help="0..100000; default 3 (2003 wizard) or 0 (2010 MRS)")
    online = start.add_mutually_exclusive_group()
    online.add_argument("--online", dest="online", action="store_true", default=None,
                        help="MRS: mailbox usable until the final sync (default where the"
                        " versions allow it; refused where they do not)")
    online.add_argument("--offline", dest="online", action="store_false",
                        help="MRS: mailbox locked for the whole move")
    start.add_argument("--suspend-when-ready", action="store_true",
                       help="MRS: stop at AutoSuspended before completing")
    start.add_argument("--fail-at", metavar="STEP", help="open-mapi, create-target, copy,"
                       " directory-update (wizard) or transient:N (MRS)")
    start.add_argument("--batch", "--batch-name", dest="batch",
                       help="batch name, -BatchName (several addresses get one by default)")
    start.add_argument("--suspend", action="store_true",
                       help="MRS: create the request suspended (-Suspend); resume starts it")
    start.add_argument("--suspend-comment", metavar="TEXT", help="MRS: -SuspendComment")
    start.add_argument("--move-host", metavar="SERVER",
                       help="wizard: server the move runs from (default: the target)")
    start.set_defaults(func=cmd_move)
    move.add_parser("list", parents=[common], help="every move").set_defaults(func=cmd_move)
    for action in ACTIONS:
        one = move.add_parser(action, parents=[common], help=f"{action} a move")
        one.add_argument("id", metavar="ID")
        if action in ("complete", "fail"):
            one.add_argument("--wait", action="store_true",
                             help="return when the move has ended and the mail for its"
                                  " mailbox has reached its final place")
            one.add_argument("--timeout", type=limits.timeout, default=60.0,
                             metavar="DURATION", help="how long --wait waits (default 60s)")
        one.set_defaults(func=cmd_move)


def _text(doc: dict[str, Any]) -> str:
    keys = ["id", "mailbox", "source", "target", "engine", "status", "status_detail",
            "percent_complete", "bad_items_encountered", "failure_reason"]
    if doc.get("engine") == "mrs2010":  # Get-MoveRequestStatistics (issue 18)
        keys += ["direction", "online", "mrs_server_name", "position_in_queue", "batch",
                 "suspend_comment", "queued_timestamp", "start_timestamp",
                 "initial_seeding_completed_timestamp", "final_sync_timestamp",
                 "completion_timestamp", "overall_duration", "total_in_progress_duration",
                 "total_suspended_duration", "total_stalled_due_to_ha_duration",
                 "failure_type", "failure_side", "failure_timestamp",
                 "bytes_transferred_per_minute"]
    history = "\n".join(f"  {when(h['time'])}  {h['status']} / {h['status_detail']}"
                        for h in doc["history"])
    # A field with no value (no failure yet) shows "-", as the tables do, not "None".
    shown = {k: "-" if doc.get(k) is None else doc[k] for k in keys}
    return f"{fields(shown, keys)}\nhistory:\n{history}"


def cmd_move(args: argparse.Namespace) -> int:
    client = Client(args)
    if args.action == "start":
        return _start(client, args)
    if args.action == "list":
        rows = client.call("GET", "/api/v1/moves")
        show(args, rows, table(rows, ["id", "mailbox", "source", "target", "engine", "status",
                                      "status_detail", "percent_complete"]))
        return 0
    path = f"/api/v1/moves/{quoted(args.id, 'ID')}"
    if args.action == "show":
        doc = client.call("GET", path)
    elif args.action == "report":
        print(client.call("GET", f"{path}/report").rstrip("\n"))
        return 0
    elif args.action == "remove":
        doc = client.call("DELETE", path)
        show(args, doc, f"move {doc['removed']} removed")
        return 0
    else:
        doc = client.call("POST", f"{path}/{args.action}")
    show(args, doc, _text(doc))
    if getattr(args, "wait", False):
        # With --json the move document stays the only thing on stdout.
        return waiting.wait_for_move(client, doc, args.timeout,
                                     sys.stderr if args.json else sys.stdout)
    return 0


def _start(client: Client, args: argparse.Namespace) -> int:
    batch = args.batch
    if batch is None and len(args.addresses) > 1:
        batch = f"batch-{secrets.token_hex(3)}"
    body: dict[str, Any] = {
        "target": args.to, "hold": args.hold,
        "bad_items": args.bad_items, "suspend_when_ready": args.suspend_when_ready,
        "suspend": args.suspend,
    }
    for key in ("engine", "bad_item_limit", "fail_at", "move_host", "online", "suspend_comment"):
        if getattr(args, key) is not None:
            body[key] = getattr(args, key)
    if batch is not None:
        body["batch"] = batch
    if args.at:
        body["at"] = _when_to_epoch(client, args.at)
    docs = [client.call("POST", "/api/v1/moves", {**body, "mailbox": address})
            for address in args.addresses]
    if args.json:
        show(args, docs[0] if len(docs) == 1 else docs, "")
    else:
        for doc in docs:
            print(f"move {doc['id']}: {doc['mailbox']} {doc['source']} -> {doc['target']}"
                  f" ({doc['engine']}{', batch ' + doc['batch'] if doc['batch'] else ''}):"
                  f" {doc['status']} / {doc['status_detail']}")
    return 0


def _when_to_epoch(client: Client, text: str) -> float:
    if text.startswith("+"):
        return float(client.call("GET", "/api/v1/clock")["now"]) + limits.duration("--at")(
            text[1:])
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise CliError(f"--at wants an ISO time or +DURATION, not {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()
