"""``mailflow connector``, ``rpc`` and ``service``: change how the organization is wired.

In: ``connector list|add|remove``, ``rpc allow|block SERVER-A SERVER-B`` and
``service stop|start SERVER mta``. Out: ``/api/v1/connectors``, ``/api/v1/rpc``
and ``/api/v1/services/...`` requests, their answers printed.
"""

from __future__ import annotations

import argparse
from typing import Any

from mailflow.cli import limits
from mailflow.cli.client import Client, quoted, show, table


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    connector = sub.add_parser("connector", help="connectors between sites").add_subparsers(
        dest="action", required=True)
    connector.add_parser("list", parents=[common]).set_defaults(func=cmd_connector)
    add = connector.add_parser("add", parents=[common], help="add a connector")
    add.add_argument("site_a", metavar="SITE-A")
    add.add_argument("site_b", metavar="SITE-B")
    add.add_argument("--type", required=True, choices=["site", "x400", "smtp"])
    add.add_argument("--cost", type=limits.whole("--cost"), default=1, help="1..100")
    add.add_argument("--name", help="default: '<SITE-A>-<SITE-B> <Type>'")
    add.set_defaults(func=cmd_connector)
    remove = connector.add_parser("remove", parents=[common], help="remove a connector")
    remove.add_argument("id", metavar="ID")
    remove.set_defaults(func=cmd_connector)

    rpc = sub.add_parser("rpc", parents=[common], help="allow or block RPC between servers")
    rpc.add_argument("action", choices=["allow", "block"])
    rpc.add_argument("a", metavar="SERVER-A")
    rpc.add_argument("b", metavar="SERVER-B")
    rpc.set_defaults(func=cmd_rpc)

    service = sub.add_parser("service", parents=[common], help="stop or start a server's MTA")
    service.add_argument("action", choices=["stop", "start"])
    service.add_argument("server", metavar="SERVER")
    service.add_argument("service", choices=["mta"])
    service.set_defaults(func=cmd_service)


def cmd_connector(args: argparse.Namespace) -> int:
    client = Client(args)
    if args.action == "list":
        rows = client.call("GET", "/api/v1/connectors")
        show(args, rows, table(rows, ["id", "name", "type", "site_a", "site_b", "cost"]))
    elif args.action == "add":
        body = {"type": args.type, "site_a": args.site_a, "site_b": args.site_b,
                "cost": args.cost, "name": args.name or ""}
        doc = client.call("POST", "/api/v1/connectors", body)
        show(args, doc, f"connector {doc['id']} {doc['name']!r} added")
    else:
        doc = client.call("DELETE", f"/api/v1/connectors/{quoted(args.id, 'ID')}")
        show(args, doc, f"connector {doc['removed']} removed")
    return 0


def cmd_rpc(args: argparse.Namespace) -> int:
    body = {"a": args.a, "b": args.b, "allowed": args.action == "allow"}
    doc = Client(args).call("POST", "/api/v1/rpc", body)
    word = "allowed" if doc["allowed"] else "blocked"
    show(args, doc, f"RPC between {doc['a']} and {doc['b']} {word}")
    return 0


def cmd_service(args: argparse.Namespace) -> int:
    path = f"/api/v1/services/{quoted(args.server, 'SERVER')}/{args.service}/{args.action}"
    doc = Client(args).call("POST", path)
    show(args, doc, f"{doc['service']} on {doc['server']}:"
                    f" {'running' if doc['running'] else 'stopped'}")
    return 0
