"""Fault rules checked and matched, with no I/O: a JSON or TOML table in, a ``FaultRule``
out; a stage of a session in, whether a live rule strikes out.

``rule`` checks a rule as the API, the ``[[faults]]`` of a scenario and a lab's ``fault``
step give it, raising ``ValueError`` naming the key. The regular expressions are RE2's
(google-re2: matching takes time linear in the text, whatever the pattern, so no rule can
backtrack catastrophically and stall the endpoints' event loop): at most ``MAX_PATTERN``
characters and ``MAX_MEMORY`` bytes compiled, searched case-insensitively in at most
``MAX_SUBJECT`` characters of an address. ``LiveRule`` is a rule in the endpoints'
hot path: ``matches`` and ``claim`` run on the lab's event loop without awaiting, so a
count taken there is taken once (``mailflow.smtp.faults`` persists it afterwards).
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Mapping
from typing import Any

import re2

from stores.faults import ACTIONS, STAGES, FaultRule

MAX_PATTERN = 200
MAX_SUBJECT = 320
MAX_TEXT = 200
MAX_DELAY = 600.0
MAX_COUNT = 1_000_000
MAX_PER_MINUTE = 100_000
MAX_SEED = 2**63 - 1
THROTTLE_WINDOW = 60.0
MAX_MEMORY = 1 << 20
KEYS = ("server", "stage", "sender", "recipient", "action", "code", "text", "seconds",
        "per_minute", "count", "probability", "seed", "start", "end")
# Stages at which the sender, and the recipients, are known.
SENDER_STAGES = ("mail", "rcpt", "data", "after-data")
RECIPIENT_STAGES = ("rcpt", "data", "after-data")


def _number(doc: Mapping[str, Any], key: str, low: float, high: float, whole: bool
            ) -> float | None:
    value = doc.get(key)
    if value is None:
        return None
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or (whole and not isinstance(value, int)) or not math.isfinite(value)):
        raise ValueError(f"{key}: expected {'an integer' if whole else 'a number'}")
    if not low <= value <= high:
        raise ValueError(f"{key}: must be {low:g}..{high:g}, got {value:g}")
    return float(value)


def _text(doc: Mapping[str, Any], key: str, default: str) -> str:
    value = doc.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ValueError(f"{key}: expected a string")
    if len(value) > MAX_TEXT or not value.isprintable() or not value.isascii():
        raise ValueError(f"{key}: at most {MAX_TEXT} printable ASCII characters")
    return value


def _options() -> Any:
    options = re2.Options()
    options.case_sensitive = False
    options.log_errors = False  # an error is the caller's 400, not a line on stderr
    options.max_mem = MAX_MEMORY
    return options


def compiled(value: str) -> Any:
    """``value`` compiled by RE2, case-insensitive; re2.error when it is not RE2 syntax."""
    return re2.compile(value, _options())


def pattern(doc: Mapping[str, Any], key: str) -> str:
    """A bounded regular expression in RE2's syntax ("" for any)."""
    value = _text(doc, key, "")
    if len(value) > MAX_PATTERN:
        raise ValueError(f"{key}: at most {MAX_PATTERN} characters")
    try:
        compiled(value)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else ""
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ValueError(f"{key}: not a regular expression RE2 takes: {reason}") from None
    return value


def rule(doc: Mapping[str, Any], servers: tuple[str, ...]) -> FaultRule:
    """``doc`` checked as a rule for a lab of ``servers`` (names, any case)."""
    unknown = sorted(set(doc) - set(KEYS))
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown key (expected one of: {', '.join(KEYS)})")
    stage, action = _text(doc, "stage", ""), _text(doc, "action", "")
    if stage not in STAGES:
        raise ValueError(f"stage: expected one of {', '.join(STAGES)}")
    if action not in ACTIONS:
        raise ValueError(f"action: expected one of {', '.join(ACTIONS)}")
    server = _text(doc, "server", "*")
    named = {s.upper(): s for s in servers}
    if server not in ("*", "all") and server.upper() not in named:
        raise ValueError(f"server: unknown server {server!r} (or \"*\" for all)")
    sender, recipient = pattern(doc, "sender"), pattern(doc, "recipient")
    if sender and stage not in SENDER_STAGES:
        raise ValueError(f"sender: the sender is not known yet at stage {stage}")
    if recipient and stage not in RECIPIENT_STAGES:
        raise ValueError(f"recipient: the recipients are not known yet at stage {stage}")
    code = int(_number(doc, "code", 400, 599, True) or 0)
    if action == "reply" and not code:
        raise ValueError("code: a reply needs a code, 400..599")
    seconds = _number(doc, "seconds", 0, MAX_DELAY, False)
    if action == "delay" and seconds is None:
        raise ValueError(f"seconds: a delay needs seconds, 0..{MAX_DELAY:g}")
    per_minute = _number(doc, "per_minute", 1, MAX_PER_MINUTE, True)
    if action == "throttle" and per_minute is None:
        raise ValueError("per_minute: a throttle needs per_minute")
    count = _number(doc, "count", 1, MAX_COUNT, True)
    probability = _number(doc, "probability", 0, 1, False)
    seed = _number(doc, "seed", 0, MAX_SEED, True)
    start, end = (_number(doc, key, 0, 1e11, False) for key in ("start", "end"))
    if start is not None and end is not None and end <= start:
        raise ValueError("end: must be after start")
    return FaultRule(
        stage=stage, action=action, server=named.get(server.upper(), "*"), sender=sender,
        recipient=recipient, code=code, text=_text(doc, "text", ""), seconds=seconds or 0.0,
        per_minute=int(per_minute or 0), count=None if count is None else int(count),
        probability=1.0 if probability is None else float(probability),
        seed=None if seed is None else int(seed), start=start, end=end)


def _search(regex: Any, address: str) -> bool:
    return regex is None or regex.search(address[:MAX_SUBJECT]) is not None


class LiveRule:
    """A rule as the endpoints use it: compiled, with its remaining count, its random
    numbers (seeded by ``seed`` when given, for runs that repeat) and, for a throttle, the
    simulated times of the messages it let through in the last minute."""

    def __init__(self, rule_id: int, rule: FaultRule, remaining: int | None) -> None:
        self.id = rule_id
        self.rule = rule
        self.remaining = remaining
        self._sender = compiled(rule.sender) if rule.sender else None
        self._recipient = compiled(rule.recipient) if rule.recipient else None
        self._random = random.Random(rule.seed)
        self._passed: deque[float] = deque()

    def matches(self, server: str, stage: str, sender: str, rcpts: tuple[str, ...],
                now: float) -> bool:
        rule = self.rule
        if rule.stage != stage or rule.server not in ("*", server):
            return False
        if (rule.start is not None and now < rule.start) or (
                rule.end is not None and now >= rule.end):
            return False
        return _search(self._sender, sender) and (
            self._recipient is None or any(_search(self._recipient, r) for r in rcpts))

    def _within_rate(self, now: float) -> bool:
        """A throttle: whether one more message fits the last minute (and count it)."""
        while self._passed and self._passed[0] <= now - THROTTLE_WINDOW:
            self._passed.popleft()
        if len(self._passed) < self.rule.per_minute:
            self._passed.append(now)
            return True
        return False

    def claim(self, now: float) -> bool:
        """Whether the rule strikes this matching stage; takes one off its count if so."""
        if self.remaining == 0:
            return False
        if self.rule.action == "throttle" and self._within_rate(now):
            return False
        if self.rule.probability < 1.0 and self._random.random() >= self.rule.probability:
            return False
        if self.remaining is not None:
            self.remaining -= 1
        return True
