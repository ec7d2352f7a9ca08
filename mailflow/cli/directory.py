"""``mailflow directory``, ``adc`` and ``groups``: the mixed-mode directory (issue 17).

In: ``directory show ADDRESS``, ``directory edit ADDRESS --replica SITE --set ATTR=VALUE``,
``adc status|run [AGREEMENT]|stop|start`` and ``groups list|show ADDRESS``. Out:
``/api/v1/directory``, ``/api/v1/adc`` and ``/api/v1/groups`` requests, their answers
printed as tables (or JSON with ``--json``).
"""

from __future__ import annotations

import argparse
from typing import Any

from mailflow.cli.client import Client, CliError, quoted, show, table, when

_OBJECT = ["replica", "state", "server", "legacy_exchange_dn", "version", "member_of"]


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    directory = sub.add_parser("directory", help="an object in AD and each site's 5.5"
                               " directory").add_subparsers(dest="action", required=True)
    shown = directory.add_parser("show", parents=[common], help="the object in every replica")
    shown.add_argument("address", metavar="ADDRESS")
    shown.set_defaults(func=cmd_directory)
    edit = directory.add_parser("edit", parents=[common],
                                help="change it in one 5.5 directory (5.5 Administrator)")
    edit.add_argument("address", metavar="ADDRESS")
    edit.add_argument("--replica", required=True, metavar="SITE")
    edit.add_argument("--set", required=True, action="append", metavar="ATTR=VALUE")
    edit.set_defaults(func=cmd_directory)

    adc = sub.add_parser("adc", help="the Active Directory Connector").add_subparsers(
        dest="action", required=True)
    adc.add_parser("status", parents=[common]).set_defaults(func=cmd_adc)
    run = adc.add_parser("run", parents=[common], help="run one agreement (or all) now")
    run.add_argument("agreement", metavar="AGREEMENT", nargs="?")
    run.set_defaults(func=cmd_adc)
    for action in ("stop", "start"):
        adc.add_parser(action, parents=[common]).set_defaults(func=cmd_adc)

    groups = sub.add_parser("groups", help="distribution lists (UDGs and 5.5 DLs)"
                            ).add_subparsers(dest="action", required=True)
    groups.add_parser("list", parents=[common]).set_defaults(func=cmd_groups)
    group = groups.add_parser("show", parents=[common])
    group.add_argument("address", metavar="ADDRESS")
    group.set_defaults(func=cmd_groups)


def _changes(pairs: list[str]) -> dict[str, str]:
    changes = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise CliError(f"--set takes ATTR=VALUE, got {pair!r}")
        changes[name] = value
    return changes


def cmd_directory(args: argparse.Namespace) -> int:
    client, path = Client(args), f"/api/v1/directory/{quoted(args.address, 'ADDRESS')}"
    if args.action == "edit":
        doc = client.call("POST", f"{path}/edit",
                          {"replica": args.replica, "set": _changes(args.set)})
    else:
        doc = client.call("GET", path)
    show(args, doc, table(doc["replicas"], _OBJECT))
    return 0


def _status(doc: dict[str, Any]) -> str:
    rows = [{**a, "last_run": when(a["last_run"]), "next_run": when(a["next_run"])}
            for a in doc["agreements"]]
    stubs = ", ".join(f"{site} {n}" for site, n in doc["stubs"].items()) or "none"
    return "\n".join([
        f"ADC {'running' if doc['running'] else 'stopped'}; next clean-up"
        f" {when(doc['next_cleanup'])}; next 5.5 replication {when(doc['next_replication'])};"
        f" stubs: {stubs}",
        table(rows, ["name", "site", "direction", "schedule", "last_run", "next_run",
                     "pending_changes"])])


def cmd_adc(args: argparse.Namespace) -> int:
    client = Client(args)
    if args.action == "status":
        doc = client.call("GET", "/api/v1/adc")
    elif args.action == "run":
        doc = client.call("POST", "/api/v1/adc/run", {"agreement": args.agreement})
    else:
        doc = client.call("POST", f"/api/v1/adc/{args.action}")
    show(args, doc, _status(doc))
    return 0


def cmd_groups(args: argparse.Namespace) -> int:
    client = Client(args)
    if args.action == "list":
        rows = client.call("GET", "/api/v1/groups")
        show(args, rows, table(rows, ["address", "site", "members", "replicated_object_version"]))
        return 0
    doc = client.call("GET", f"/api/v1/groups/{quoted(args.address, 'ADDRESS')}")
    show(args, doc, table(doc["dls"], ["replica", "legacy_exchange_dn", "members"]))
    return 0
