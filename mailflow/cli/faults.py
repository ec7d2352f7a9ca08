"""``mailflow fault add|list|remove|clear``: the lab's fault rules (docs/faults.md).

In: the subcommand and, for ``add``, the rule as options (``--stage``, ``--action`` and
the rest; the lab checks the rule and answers 400 naming what is wrong). Out:
``POST|GET|DELETE /api/v1/faults`` and ``DELETE /api/v1/faults/{id}``, printed as the rule,
a table of rules, or what was removed (JSON with ``--json``).
"""

from __future__ import annotations

import argparse
from typing import Any

from mailflow.cli.client import Client, fields, show, table
from stores.faults import ACTIONS, STAGES

COLUMNS = ["id", "server", "stage", "sender", "recipient", "action", "code", "count",
           "probability", "remaining", "injected"]
# Options of `fault add` passed on as they are: (option, rule key, type, help).
_OPTIONS: tuple[tuple[str, str, type, str], ...] = (
    ("--server", "server", str, "a server name, or * for all (default)"),
    ("--sender", "sender", str, "regular expression the sender must match"),
    ("--recipient", "recipient", str, "regular expression a recipient must match"),
    ("--code", "code", int, "reply code, 400..599 (reply, throttle)"),
    ("--text", "text", str, "reply text, starting with its enhanced status code"),
    ("--seconds", "seconds", float, "delay: real seconds before the usual answer"),
    ("--per-minute", "per_minute", int, "throttle: messages let through a simulated minute"),
    ("--count", "count", int, "strike the next N matching, then recover"),
    ("--probability", "probability", float, "strike with this probability, 0..1"),
    ("--seed", "seed", int, "seed of the rule's random numbers, for runs that repeat"),
    ("--start", "start", float, "active from this simulated time (epoch seconds)"),
    ("--end", "end", float, "active until this simulated time (epoch seconds)"),
)


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    fault = sub.add_parser("fault", help="inject SMTP faults: add, list, remove, clear rules")
    actions = fault.add_subparsers(dest="fault_command", required=True)
    add = actions.add_parser("add", parents=[common], help="add a rule")
    add.add_argument("--stage", required=True, choices=STAGES)
    add.add_argument("--action", required=True, choices=ACTIONS)
    for option, key, kind, text in _OPTIONS:
        add.add_argument(option, dest=key, type=kind, help=text)
    add.set_defaults(func=cmd_add)
    listing = actions.add_parser("list", parents=[common], help="list the rules")
    listing.set_defaults(func=cmd_list)
    remove = actions.add_parser("remove", parents=[common], help="remove one rule")
    remove.add_argument("id", type=int)
    remove.set_defaults(func=cmd_remove)
    clear = actions.add_parser("clear", parents=[common], help="remove every rule")
    clear.set_defaults(func=cmd_clear)


def cmd_add(args: argparse.Namespace) -> int:
    rule: dict[str, Any] = {"stage": args.stage, "action": args.action}
    rule.update({key: getattr(args, key) for _, key, _, _ in _OPTIONS
                 if getattr(args, key) is not None})
    doc = Client(args).call("POST", "/api/v1/faults", rule)
    show(args, doc, fields(doc, list(doc)))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    rows = Client(args).call("GET", "/api/v1/faults")
    show(args, rows, table(rows, COLUMNS))
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    doc = Client(args).call("DELETE", f"/api/v1/faults/{args.id}")
    show(args, doc, f"removed rule {args.id}")
    return 0


def cmd_clear(args: argparse.Namespace) -> int:
    doc = Client(args).call("DELETE", "/api/v1/faults")
    show(args, doc, f"removed {doc['removed']} rule(s)")
    return 0
