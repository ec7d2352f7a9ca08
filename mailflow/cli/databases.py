"""``mailflow db``: DAG databases and their copies (issue 19).

In: ``db list``, ``db show DB``, ``db lag DB SERVER --copy-queue N [--replay-queue N]``,
``db suspend-copy|resume-copy DB SERVER``, ``db failover DB --to SERVER`` and
``db dismount|mount DB``. Out: ``/api/v1/databases`` requests, their answers printed
(a table of copies, or JSON with --json).
"""

from __future__ import annotations

import argparse
from typing import Any

from mailflow.cli import limits
from mailflow.cli.client import Client, quoted, show, table

COLUMNS = ["database", "server", "site", "activation_preference", "status",
           "copy_queue_length", "replay_queue_length"]


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    db = sub.add_parser("db", help="DAG databases and their copies").add_subparsers(
        dest="action", required=True)
    db.add_parser("list", parents=[common], help="every database and copy"
                  ).set_defaults(func=cmd_db)
    for action, what in (("show", "one database"), ("dismount", "dismount a database"),
                         ("mount", "mount a database")):
        one = db.add_parser(action, parents=[common], help=what)
        one.add_argument("database", metavar="DB")
        one.set_defaults(func=cmd_db)
    lag = db.add_parser("lag", parents=[common], help="set a passive copy's queue lengths")
    _copy_args(lag)
    lag.add_argument("--copy-queue", type=limits.whole("--copy-queue"), required=True)
    lag.add_argument("--replay-queue", type=limits.whole("--replay-queue"))
    for action in ("suspend-copy", "resume-copy"):
        _copy_args(db.add_parser(action, parents=[common], help=f"{action[:-5]} replication"))
    failover = db.add_parser("failover", parents=[common], help="activate another copy")
    failover.add_argument("database", metavar="DB")
    failover.add_argument("--to", required=True, metavar="SERVER")
    failover.set_defaults(func=cmd_db)


def _copy_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("database", metavar="DB")
    parser.add_argument("server", metavar="SERVER")
    parser.set_defaults(func=cmd_db)


def _request(args: argparse.Namespace) -> tuple[str, str, dict[str, Any] | None]:
    """The method, path and body of ``args``' action."""
    if args.action == "list":
        return "GET", "/api/v1/databases", None
    base = f"/api/v1/databases/{quoted(args.database, 'DB')}"
    if args.action == "show":
        return "GET", base, None
    if args.action in ("dismount", "mount"):
        return "POST", f"{base}/{args.action}", None
    if args.action == "failover":
        return "POST", f"{base}/failover", {"server": args.to}
    copy = f"{base}/copies/{quoted(args.server, 'SERVER')}"
    if args.action == "lag":
        return "POST", f"{copy}/lag", {"copy_queue_length": args.copy_queue,
                                       "replay_queue_length": args.replay_queue}
    return "POST", f"{copy}/{args.action.removesuffix('-copy')}", None


def cmd_db(args: argparse.Namespace) -> int:
    method, path, body = _request(args)
    doc = Client(args).call(method, path, body)
    found = doc if isinstance(doc, list) else [doc]
    rows = [copy for database in found for copy in database["copies"]]
    heads = [f"{d['name']} (DAG {d['dag']}, DataMoveReplicationConstraint"
             f" {d['data_move_replication_constraint']})" for d in found]
    show(args, doc, "\n".join(heads) + "\n" + table(rows, COLUMNS))
    return 0
