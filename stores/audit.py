"""The no-loss audit: the whole store in, a verdict on every accepted (message, recipient) out.

Every accepted pair must be in exactly one place: one queue on one existing
server, or delivered into exactly one mailbox item that sits in a store
holding that mailbox, or relayed out of the organization through the outbound
smarthost, or finally NDR'd, deleted, or expanded (a distribution list whose
members became pairs of their own, each audited the same way). Every pair must
have been accepted exactly once, and every mailbox item must belong to a
delivered pair.

Every 250 after DATA must name stored pairs: ``acknowledge`` records, in the
transaction that commits before the reply, the queue id answered and its
recipients; the audit finds a pair for each, and a resend of a hop (which
stores nothing new) must point at a hop the same server took before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from stores.backend import Conn, Tx
from stores.messages import FINAL, PairState, queue_state


@dataclass
class AuditReport:
    accepted: int = 0
    delivered: int = 0
    relayed: int = 0
    ndr: int = 0
    deleted: int = 0
    expanded: int = 0  # group addresses expanded into their members (issue 17)
    acknowledged: int = 0  # 250 replies after DATA on record
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
            "expanded": self.expanded,
            "acknowledged": self.acknowledged,
            "queued": self.queued,
            "problems": self.problems,
        }


def acknowledge(tx: Tx, queue_id: str, server: str, rcpts: Sequence[str], *,
                hop: str | None = None, duplicate: bool = False) -> None:
    """Record that ``server`` answered 250 naming ``queue_id`` for ``rcpts`` (normalized as
    the pairs are); ``hop``: the verified hop token the mail came with; ``duplicate``: a
    resend of that hop, which stored nothing new. One insert, in the accept's transaction."""
    tx.execute("INSERT INTO acks(queue_id, server, rcpts, hop, duplicate) VALUES (?,?,?,?,?)",
               (queue_id, server, "\n".join(rcpts), hop, int(duplicate)))


def _check_acks(conn: Conn, stored: set[tuple[str, str]], report: AuditReport) -> None:
    """Every acknowledged recipient has a pair of the queue id answered; every resent hop
    was taken before by the server that answered it."""
    taken: set[tuple[str, str]] = set()
    resent: list[tuple[str, str, str]] = []
    for queue_id, server, rcpts, hop, duplicate in conn.execute(
        "SELECT queue_id, server, rcpts, hop, duplicate FROM acks ORDER BY id"
    ):
        report.acknowledged += 1
        lost = [rcpt for rcpt in rcpts.split("\n") if rcpt and (queue_id, rcpt) not in stored]
        if lost:
            report.problems.append(f"{server} answered 250 for {queue_id} to {', '.join(lost)}"
                                   " but stored no such pair")
        if duplicate:
            resent.append((queue_id, server, hop))
        elif hop is not None:
            taken.add((server, hop))
    for queue_id, server, hop in resent:
        if (server, hop) not in taken:
            report.problems.append(f"{server} answered 250 for {queue_id} as a resend of hop"
                                   f" {hop}, which it never took: nothing was stored")


def audit(conn: Conn, servers: set[str]) -> AuditReport:
    report = AuditReport()
    stored: set[tuple[str, str]] = set()
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
        stored.add((message, rcpt))
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
            report.expanded += current is PairState.EXPANDED
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
    _check_acks(conn, stored, report)
    return report
