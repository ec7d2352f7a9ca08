"""``mailflow audit``: prove that no accepted recipient was lost.

In: the command and the common flags. Out: ``GET /api/v1/audit`` printed (JSON
with ``--json``): where every accepted recipient is, how many 250 replies after
DATA are on record (each must name stored mail), and any problem; exit status 1
when the audit finds one.
"""

from __future__ import annotations

import argparse
from typing import Any

from mailflow.cli.client import Client, show


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    sub.add_parser("audit", parents=[common], help="prove no accepted recipient was lost"
                   ).set_defaults(func=cmd_audit)


def cmd_audit(args: argparse.Namespace) -> int:
    doc = Client(args).call("GET", "/api/v1/audit")
    queued = "\n".join(f"  {k}: {v}" for k, v in sorted(doc["queued"].items()))
    text = (f"accepted {doc['accepted']}, delivered {doc['delivered']},"
            f" relayed {doc['relayed']}, NDR {doc['ndr']},"
            f" deleted {doc['deleted']},"
            + (f" expanded {doc['expanded']}," if doc.get("expanded") else "")
            + f" queued {sum(doc['queued'].values())},"
            f" acknowledged {doc['acknowledged']} (250 replies)\n{queued}\n")
    text += "audit clean: every accepted recipient is in exactly one place" if doc["clean"] \
        else "AUDIT FAILED:\n" + "\n".join(f"  {p}" for p in doc["problems"])
    show(args, doc, text.replace("\n\n", "\n"))
    return 0 if doc["clean"] else 1
