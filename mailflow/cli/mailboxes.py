"""``mailflow mailbox`` and ``mailflow trace``: mailboxes, their messages, one message's hops.

In: ``mailbox list|show|messages [ADDRESS]`` and ``trace MESSAGE-ID``. Out:
``/api/v1/mailboxes...`` and ``/api/v1/messages/{id}`` printed as tables or
fields (JSON with ``--json``).
"""

from __future__ import annotations

import argparse
from typing import Any

from mailflow.cli.client import Client, fields, quoted, show, table, when


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    mailbox = sub.add_parser("mailbox", parents=[common], help="mailboxes and their messages")
    mailbox.add_argument("action", choices=["list", "show", "messages"])
    mailbox.add_argument("address", nargs="?")
    mailbox.set_defaults(func=cmd_mailbox)

    trace = sub.add_parser("trace", parents=[common], help="every hop of one message")
    trace.add_argument("message", metavar="MESSAGE-ID",
                       help="the queue id the 250 reply named, or the Message-ID header")
    trace.set_defaults(func=cmd_trace)


def cmd_mailbox(args: argparse.Namespace) -> int:
    client = Client(args)
    if args.action == "list":
        rows = client.call("GET", "/api/v1/mailboxes")
        show(args, rows, table(rows, ["address", "server", "in_transit", "message_count"]))
        return 0
    address = quoted(args.address, "ADDRESS")
    if args.action == "show":
        doc = client.call("GET", f"/api/v1/mailboxes/{address}")
        show(args, doc, fields(doc, ["address", "display_name", "server", "store", "in_transit",
                                     "message_count", "home_mdb", "home_mta", "home_server_name",
                                     "legacy_exchange_dn", "proxy_addresses",
                                     "archive_database", "move_request",
                                     *(k for k in doc if k.startswith("msExchMailboxMove"))]))
    else:
        rows = client.call("GET", f"/api/v1/mailboxes/{address}/messages")
        view = [{**r, "delivered": when(r["delivered_at"])} for r in rows]
        show(args, rows, table(view, ["id", "folder", "delivered", "mail_from", "subject"]))
    return 0


def cmd_trace(args: argparse.Namespace) -> int:
    doc = Client(args).call("GET", f"/api/v1/messages/{quoted(args.message, 'MESSAGE-ID')}")
    view = [{**t, "simulated": when(t["sim_time"]), "real": when(t["real_time"])}
            for t in doc["trace"]]
    head = f"message {doc['id']} {doc['message_id']} from <{doc['mail_from']}>"
    show(args, doc, head + "\n" + table(view, ["simulated", "real", "server", "rcpt", "stage",
                                               "detail"]))
    return 0
