"""The no-loss audit: the whole store in, a verdict on every accepted (message, recipient) out.

Every accepted pair must be in exactly one place: one queue on one existing
server, or delivered into exactly one mailbox item that sits in a store
holding that mailbox, or relayed out of the organization through the outbound
smarthost, or finally NDR'd or deleted. Every pair must have been
accepted exactly once, and every mailbox item must belong to a delivered pair.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stores.backend import Conn
from stores.messages import FINAL, PairState, queue_state


@dataclass
class AuditReport:
    accepted: int = 0
    delivered: int = 0
    relayed: int = 0
    ndr: int = 0
    deleted: int = 0
    queued: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "accepted": self.accepted,
            "delivered": self.delivered,
            "relayed": self.relayed,
            "ndr": self.ndr,
            "deleted": self.deleted,
            "queued": self.queued,
            "problems": self.problems,
        }


def audit(conn: Conn, servers: set[str]) -> AuditReport:
    report = AuditReport()
    items: dict[int, int] = dict(
        conn.execute("SELECT pair, COUNT(*) FROM items WHERE pair IS NOT NULL GROUP BY pair")
    )
    accepted: dict[tuple[str, str], int] = {
        (r[0], r[1]): r[2]
        for r in conn.execute(
            "SELECT message, rcpt, COUNT(*) FROM trace WHERE stage='accepted'"
            " GROUP BY message, rcpt"
        )
    }
    for pair_id, message, rcpt, state, server, queue in conn.execute(
        "SELECT id, message, rcpt, state, server, queue FROM pairs"
    ):
        report.accepted += 1
        where = f"pair {pair_id} ({message} to {rcpt})"
        if accepted.get((message, rcpt), 0) != 1:
            report.problems.append(
                f"{where}: accepted {accepted.get((message, rcpt), 0)} times, not once"
            )
        try:
            current = PairState(state)
        except ValueError:
            report.problems.append(f"{where}: unknown state {state!r}")
            continue
        delivered_items = items.pop(pair_id, 0)
        if current is PairState.DELIVERED:
            report.delivered += 1
            if delivered_items != 1:
                report.problems.append(f"{where}: delivered into {delivered_items} items, not 1")
        elif delivered_items:
            report.problems.append(f"{where}: {current.value} but also in a mailbox")
        if current in FINAL:
            report.relayed += current is PairState.RELAYED
            report.ndr += current is PairState.NDR
            report.deleted += current is PairState.DELETED
            if queue is not None:
                report.problems.append(f"{where}: {current.value} but still in queue {queue}")
            continue
        if queue is None or server not in servers:
            report.problems.append(f"{where}: {current.value} in no queue on a known server")
            continue
        try:
            if queue_state(queue) is not current:
                report.problems.append(f"{where}: state {current.value} in queue {queue}")
        except ValueError:
            report.problems.append(f"{where}: unknown queue {queue!r}")
        key = f"{server}\\{queue}"
        report.queued[key] = report.queued.get(key, 0) + 1
    for pair_id in items:
        report.problems.append(f"mailbox item of pair {pair_id} has no accepted pair")
    for server, mailbox in conn.execute(
        "SELECT DISTINCT i.server, i.mailbox FROM items i LEFT JOIN store_mailboxes s"
        " ON s.server = i.server AND s.mailbox = i.mailbox WHERE s.mailbox IS NULL"
    ):
        report.problems.append(f"items of {mailbox} sit on {server}, whose store lacks it")
    return report
