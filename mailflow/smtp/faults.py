"""Fault injection on the endpoints: rules in, the faults they call for on SMTP sessions out.

``FaultBook`` holds the lab's rules twice: in the store (``stores.faults``: they survive a
restart, and each injection is written with its trace line, event and metric) and in
memory, as ``LiveRule`` (``mailflow.smtp.faultrules``), for the sessions: at each stage
(connect, helo, mail, rcpt, data, after-data) a session asks its endpoint's ``FaultGate``,
which finds the first rule (oldest first) that matches and strikes, without awaiting
anything, so concurrent sessions never take the same count twice; only then is the
injection written, and the fault acted out:

- ``reply``: the rule's code and text (``S451_FAULT``/``S554_FAULT`` text by default);
  at connect, or with code 421, the connection is closed after it (RFC 5321 §3.8);
- ``throttle``: past ``per_minute`` matching messages in 60 simulated seconds, the same
  (``S452_THROTTLED`` by default);
- ``disconnect``: the connection is dropped without a reply. After DATA the message is
  committed first and the 250 is never sent: the message is kept, and a sender that
  retries delivers it twice (RFC 1047's duplicate);
- ``delay``: the stage is answered as usual after ``seconds`` real seconds; a client gone
  by then is not answered, and after DATA its message is not stored.

A reply of 4xx/5xx after DATA is answered before the commit: nothing is stored. Only the
public port of an endpoint has a gate: the lab's own hop between servers is never faulted.
"""

from __future__ import annotations

import logging
from typing import Any

from mailflow.smtp import replies
from mailflow.smtp.connection import SmtpConnection
from mailflow.smtp.faultrules import LiveRule
from stores import faults
from stores.backend import Backend
from stores.faults import FaultRule

log = logging.getLogger(__name__)


class FaultBook:
    """The lab's fault rules, in the store and in memory for the hot path."""

    def __init__(self, store: Backend) -> None:
        self.store = store
        self._live: dict[int, LiveRule] = {}

    async def load(self) -> None:
        """Take the rules from the store (at start: the scenario's, and those added before)."""
        found = await self.store.read(faults.rows)
        self._live = {row.id: LiveRule(row.id, row.rule, row.remaining) for row in found}

    async def add(self, rule: FaultRule) -> dict[str, Any]:
        rule_id = await self.store.write(lambda tx: faults.add(tx, rule))
        self._live[rule_id] = LiveRule(rule_id, rule, rule.count)
        return faults.FaultRow(rule_id, rule, rule.count, 0).doc()

    async def listing(self) -> list[dict[str, Any]]:
        return [row.doc() for row in await self.store.read(faults.rows)]

    async def remove(self, rule_id: int) -> bool:
        self._live.pop(rule_id, None)
        return await self.store.write(lambda tx: faults.remove(tx, rule_id))

    async def clear(self) -> int:
        self._live.clear()
        return await self.store.write(faults.clear)

    def claim(self, server: str, stage: str, sender: str, rcpts: tuple[str, ...]
              ) -> LiveRule | None:
        """The first rule that strikes this stage (its count taken), or None. Never awaits."""
        now = self.store.clock.now()
        for live in self._live.values():
            if live.matches(server, stage, sender, rcpts, now) and live.claim(now):
                return live
        return None

    async def record(self, live: LiveRule, server: str, stage: str, rcpt: str | None
                     ) -> bool:
        """Write one injection of ``live``; False when the rule was removed meanwhile."""
        return await self.store.write(
            lambda tx: faults.injected(tx, live.id, server, stage, describe(live.rule), rcpt))


def reply_line(rule: FaultRule) -> str:
    """The reply a ``reply`` or ``throttle`` rule answers."""
    if not rule.code:
        return replies.S452_THROTTLED.line()
    if rule.text:
        return replies.Reply(rule.code, rule.text).line()
    default = replies.S451_FAULT if rule.code < 500 else replies.S554_FAULT
    return replies.Reply(rule.code, default.text).line()


def describe(rule: FaultRule) -> str:
    """What an injection of ``rule`` does, for its trace line and event."""
    if rule.action == "delay":
        return f"delay {rule.seconds:g}s"
    if rule.action == "disconnect":
        return "disconnect"
    return reply_line(rule)


class FaultGate:
    """The rules of one endpoint, asked by its sessions at every stage."""

    def __init__(self, book: FaultBook, server: str) -> None:
        self.book = book
        self.server = server

    async def __call__(self, session: SmtpConnection, stage: str, address: str | None) -> bool:
        """Whether a fault took this stage over (True: the session must not answer it)."""
        envelope = session.envelope
        sender = address if stage == "mail" else envelope.mail_from if envelope else None
        rcpts = ((address,) if stage == "rcpt" else
                 tuple(envelope.rcpt_tos) if envelope is not None else ())
        sender = "" if sender in (None, "<>") else str(sender)
        live = self.book.claim(self.server, stage, sender, tuple(r for r in rcpts if r))
        if live is None:
            return False
        try:
            recorded = await self.book.record(live, self.server, stage,
                                              rcpts[0] if rcpts else None)
        except Exception:  # the store failed (disk full): no fault goes unrecorded
            log.exception("recording fault rule %d on %s failed", live.id, self.server)
            return False
        return recorded and await act(session, live.rule, stage)


async def act(session: SmtpConnection, rule: FaultRule, stage: str) -> bool:
    """Act ``rule`` out on ``session`` at ``stage``; whether the stage was taken over."""
    if rule.action == "delay":
        return not await session.pause(rule.seconds)
    if rule.action == "disconnect":
        if stage == "after-data":
            status = await session._call_handler_hook("DATA")
            if not status.startswith("250"):  # nothing committed: say so, as usual
                await session.push(status)
                return True
        await session.drop(None)
        return True
    line = reply_line(rule)
    if stage == "connect" or line.startswith("421"):
        await session.drop(line)
    else:
        await session.push(line)
    return True

