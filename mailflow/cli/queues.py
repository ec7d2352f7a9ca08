"""``mailflow queues``, ``queue``, ``qshape``, ``messages`` and ``server``: Queue Viewer
from the shell.

In: the subcommands and their flags. Out: calls to the queue, qshape, message search
and server routes of ``/api/v1``, printed as tables (or JSON with ``--json``).
"""

from __future__ import annotations

import argparse
import urllib.parse
from typing import Any

from mailflow.cli import limits, queue_list
from mailflow.cli.client import Client, age, quoted, show, table, when
from mailflow.queue_views import GROUPINGS, render_qshape


def add_list_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """``mailflow queues``, added apart: it comes before ``move`` in ``mailflow --help``."""
    sub.add_parser("queues", parents=[common], help="every queue, as Queue Viewer shows it"
                   ).set_defaults(func=cmd_queues)


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    queue = sub.add_parser("queue", help="one queue: messages, retry, freeze, thaw, delete"
                           ).add_subparsers(dest="action", required=True)
    for action, text in (("show", "the messages of a queue (Find Messages)"),
                         ("retry", "Force Connection: try every message now"),
                         ("freeze", "freeze a queue, or one message in it"),
                         ("thaw", "unfreeze a queue, or one message in it"),
                         ("suspend", "2007/2010 servers: freeze, in Get-Queue's word"),
                         ("resume", "2007/2010 servers: thaw, in Get-Queue's word"),
                         ("delete", "delete one message, with or without NDR"),
                         ("delete-all", "Delete all messages of a queue, with or without NDR")):
        one = queue.add_parser(action, parents=[common], help=text)
        one.add_argument("server", metavar="SERVER")
        one.add_argument("queue_id", metavar="QUEUE",
                         help="queue id: deferred, unreachable, holding, smtp:EX2003-B, ...")
        if action in ("freeze", "thaw", "suspend", "resume"):
            one.add_argument("message", metavar="MESSAGE-ID", nargs="?",
                             help="queue id or Message-ID header (default: the whole queue)")
        elif action == "delete":
            one.add_argument("message", metavar="MESSAGE-ID",
                             help="queue id or Message-ID header")
            one.add_argument("--ndr", action="store_true", help="send the sender an NDR")
        elif action == "delete-all":
            one.add_argument("--ndr", action="store_true", help="send each sender an NDR")
        elif action == "show":
            one.add_argument("--sender", help="sender contains this text")
            one.add_argument("--recipient", help="a recipient contains this text")
            one.add_argument("--older-than", metavar="DURATION",
                             type=limits.duration("--older-than"),
                             help="in the queue at least this long, e.g. 30m, 12h")
            one.add_argument("--state", choices=("frozen", "retry"),
                             help="only messages in this state (Find Messages)")
            one.add_argument("--limit", type=limits.whole("--limit"), metavar="N",
                             help="list at most N messages (default 1000)")
        one.set_defaults(func=cmd_queue)
    queue_list.add_parser(queue, common)

    qshape = sub.add_parser("qshape", parents=[common],
                            help="age table of queued mail by destination (Postfix qshape)")
    qshape.add_argument("server", metavar="SERVER", nargs="?", help="default: every server")
    qshape.add_argument("--queue", help="only this queue id")
    qshape.add_argument("--by", choices=GROUPINGS, default="recipient-domain")
    qshape.set_defaults(func=cmd_qshape)

    found = sub.add_parser("messages", parents=[common], help="search messages")
    found.add_argument("--search", metavar="TEXT", help="sender, a recipient or the subject")
    found.add_argument("--sender")
    found.add_argument("--recipient")
    found.add_argument("--subject")
    found.set_defaults(func=cmd_messages)

    server = sub.add_parser("server", help="Disable Outbound Mail on a server"
                            ).add_subparsers(dest="action", required=True)
    for action in ("disable-outbound", "enable-outbound"):
        one = server.add_parser(action, parents=[common],
                                help=f"{action.split('-')[0]} its link queues to other servers")
        one.add_argument("server", metavar="SERVER")
        one.set_defaults(func=cmd_server)


def _query(**params: str | float | None) -> str:
    given = {k: str(v) for k, v in params.items() if v is not None}
    return f"?{urllib.parse.urlencode(given)}" if given else ""


def cmd_queues(args: argparse.Namespace) -> int:
    rows = Client(args).call("GET", "/api/v1/queues")
    view = [
        {**r, "next_retry": when(r["next_retry_time"]) if r["next_retry_time"] else None,
         "oldest": age(r["oldest_message_age_seconds"]) if r["message_count"] else None}
        for r in rows
    ]
    show(args, rows, table(view, ["identity", "message_count", "status", "next_retry",
                                  "oldest", "last_error"]))
    return 0


def cmd_queue(args: argparse.Namespace) -> int:
    client = Client(args)
    path = f"/api/v1/queues/{quoted(args.server, 'SERVER')}/{quoted(args.queue_id, 'QUEUE')}"
    if args.action == "show":
        rows = client.call("GET", f"{path}/messages" + _query(
            sender=args.sender, recipient=args.recipient, older_than=args.older_than,
            state=args.state, limit=args.limit))
        view = [{**r, "arrived": when(r["arrival_time"]), "next": when(r["next_attempt"]),
                 "frozen": "yes" if r["frozen"] else ""} for r in rows]
        show(args, rows, table(view, ["id", "message_id", "sender", "recipient", "subject", "size",
                                      "arrived", "attempts", "next", "frozen", "last_error"]))
    elif args.action == "retry":
        doc = client.call("POST", f"{path}/retry")
        show(args, doc, f"{doc['server']}\\{doc['queue']}: {doc['retried']} retried now")
    elif args.action == "delete-all":
        doc = client.call("DELETE", f"{path}/messages?ndr={'true' if args.ndr else 'false'}")
        show(args, doc, f"{doc['messages']} message(s) deleted from {doc['server']}\\"
                        f"{doc['queue']} {'with' if doc['ndr'] else 'without'} NDR")
    elif args.action == "delete":
        message = quoted(args.message, "MESSAGE-ID")
        doc = client.call("DELETE", f"{path}/messages/{message}"
                          f"?ndr={'true' if args.ndr else 'false'}")
        show(args, doc, f"message {doc['message']} deleted from {doc['server']}\\{doc['queue']}"
                        f" {'with' if doc['ndr'] else 'without'} NDR"
                        f" ({', '.join(doc['deleted'])})")
    elif args.message:
        doc = client.call("POST", f"{path}/messages/{quoted(args.message, 'MESSAGE-ID')}"
                                  f"/{args.action}")
        show(args, doc, f"message {doc['message']} in {doc['server']}\\{doc['queue']}:"
                        f" {'frozen' if doc['frozen'] else 'thawed'}")
    else:
        doc = client.call("POST", f"{path}/{args.action}")
        show(args, doc, f"{doc['server']}\\{doc['queue']}: {doc['status']}")
    return 0


def cmd_qshape(args: argparse.Namespace) -> int:
    doc = Client(args).call("GET", "/api/v1/qshape" + _query(
        server=args.server, queue=args.queue, by=args.by))
    show(args, doc, render_qshape(doc))
    return 0


def cmd_messages(args: argparse.Namespace) -> int:
    rows = Client(args).call("GET", "/api/v1/messages" + _query(
        search=args.search, sender=args.sender, recipient=args.recipient,
        subject=args.subject))
    view = [{**r, "accepted": when(r["accepted_at"]), "sender": r["sender"] or "<>",
             "recipients": ", ".join(f"{p['rcpt']} ({p['queue'] or p['state']})"
                                     for p in r["recipients"])} for r in rows]
    show(args, rows, table(view, ["id", "accepted", "sender", "subject", "recipients"]))
    return 0


def cmd_server(args: argparse.Namespace) -> int:
    doc = Client(args).call("POST", f"/api/v1/servers/{quoted(args.server, 'SERVER')}"
                                    f"/{args.action}")
    show(args, doc, f"outbound mail on {doc['server']}: {doc['outbound']}")
    return 0
