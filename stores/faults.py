"""Fault rules in the store: a rule in, its row out; an injection in, the count taken down.

In: ``FaultRule`` values (checked by ``mailflow.smtp.faultrules``) and, for every fault
injected by an SMTP endpoint, the rule's id with where it struck. Out: the rules with
how many injections each may still make and has made (``rows``), and per injection a
trace line, an event and the fact ``fault_injected`` (for
``mailflow_faults_injected_total{server,stage}``). The remaining count is taken down by one
guarded ``UPDATE`` (never below 0), so sessions racing for the last injection cannot both
have it written.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from stores.backend import Read, Tx

# The stages of an SMTP session a rule can strike at, in the order a session reaches them.
STAGES = ("connect", "helo", "mail", "rcpt", "data", "after-data")
ACTIONS = ("reply", "disconnect", "delay", "throttle")
# The event logged at every injection (source "mailflow", category "Faults").
FAULT_INJECTED_EVENT = 1035


@dataclass(frozen=True)
class FaultRule:
    """One rule: where it strikes (server, or "*" for all; stage; regular expressions on
    the sender and the recipient, "" for any), what it does, and how often."""

    stage: str
    action: str
    server: str = "*"
    sender: str = ""
    recipient: str = ""
    # reply and throttle: the reply (code and text with its enhanced status code).
    code: int = 0
    text: str = ""
    # delay: real seconds before the stage is answered as usual.
    seconds: float = 0.0
    # throttle: matching messages let through in any 60 simulated seconds.
    per_minute: int = 0
    # At most this many injections, then the rule is spent (None: no limit).
    count: int | None = None
    probability: float = 1.0
    seed: int | None = None
    # The simulated-time window the rule is active in (epoch seconds; None: open).
    start: float | None = None
    end: float | None = None

    def doc(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class FaultRow:
    id: int
    rule: FaultRule
    remaining: int | None
    injected: int

    def doc(self) -> dict[str, Any]:
        return {"id": self.id, **self.rule.doc(), "remaining": self.remaining,
                "injected": self.injected}


def add(tx: Tx, rule: FaultRule) -> int:
    cur = tx.execute("INSERT INTO faults(rule, remaining, created) VALUES (?,?,?) RETURNING id",
                     (json.dumps(rule.doc()), rule.count, tx.now))
    return int(cur.fetchone()[0])


def remove(tx: Tx, rule_id: int) -> bool:
    return tx.execute("DELETE FROM faults WHERE id = ?", (rule_id,)).rowcount > 0


def clear(tx: Tx) -> int:
    return tx.execute("DELETE FROM faults").rowcount


def rows(conn: Read) -> list[FaultRow]:
    """Every rule, oldest first (the order rules are tried in)."""
    return [FaultRow(r["id"], FaultRule(**json.loads(r["rule"])), r["remaining"], r["injected"])
            for r in conn.execute("SELECT id, rule, remaining, injected FROM faults ORDER BY id")]


def injected(tx: Tx, rule_id: int, server: str, stage: str, what: str,
             rcpt: str | None = None) -> bool:
    """Record one injection of rule ``rule_id``: False (nothing recorded) when the rule is
    gone or spent."""
    cur = tx.execute(
        "UPDATE faults SET injected = injected + 1,"
        " remaining = CASE WHEN remaining IS NULL THEN NULL ELSE remaining - 1 END"
        " WHERE id = ? AND (remaining IS NULL OR remaining > 0)", (rule_id,))
    if cur.rowcount == 0:
        return False
    tx.trace(f"fault-{rule_id}", rcpt, server, f"fault:{stage}", what)
    tx.event("mailflow", FAULT_INJECTED_EVENT, "Warning", server,
             f"fault rule {rule_id} injected at {stage}: {what}", category="Faults")
    tx.note("fault_injected", server=server, stage=stage)
    return True
