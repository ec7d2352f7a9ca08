"""The range of every number that enters the lab from outside, in one place.

In: a value the API (``mailflow.api.request``) or the CLI (``mailflow.cli.limits``) was
given; a lab file's checker (``mailflow.labs.checker``) takes the same ranges. Out: the
value, or ``ValueError`` naming the field and its range; the API answers that with a JSON
400, the CLI with one line and exit 2. Imports nothing heavy, so the CLI
may use it at parse time. docs/reliability.md lists these ranges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# SQLite's integers are 64-bit: ids and offsets beyond this cannot name a row.
MAX_ID = 2**63 - 1
# 9999-12-31T23:59:59Z: the last instant a date can show; simulated times stay below it.
MAX_SIM_TIME = 253_402_300_799.0
# How far one clock advance may go: ten simulated years (the CLI's --advance too).
MAX_ADVANCE_SECONDS = 10 * 365 * 86400.0
# A JSON body nests at most this deep (every document of the API is 3 levels or fewer).
MAX_JSON_DEPTH = 32


def bound_text(value: float) -> str:
    """A bound as a person reads it: ``315360000``, not ``3.1536e+08``."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class Range:
    """A closed range ``low..high`` of whole numbers (``whole``) or finite numbers."""

    name: str
    low: float
    high: float
    whole: bool = True

    def __str__(self) -> str:
        return f"{self.name} must be {bound_text(self.low)}..{bound_text(self.high)}"

    def check(self, value: object) -> float:
        """``value`` if it is a number of this range (a JSON bool is not), else ValueError."""
        kind_ok = isinstance(value, int) if self.whole else isinstance(value, int | float)
        if not kind_ok or isinstance(value, bool):
            raise ValueError(f"{self} ({'a whole number' if self.whole else 'a number'})")
        assert isinstance(value, int | float)
        if not (math.isfinite(value) and self.low <= value <= self.high):
            raise ValueError(str(self))
        return value

    def check_int(self, value: object) -> int:
        """``check`` for a range of whole numbers."""
        checked = self.check(value)
        assert isinstance(checked, int)
        return checked

    def parse(self, text: str) -> float:
        """A number of this range written as text (a query string, a path, an option)."""
        try:
            value: float = int(text) if self.whole else float(text)
        except ValueError:
            raise ValueError(f"{self}, not {text[:40]!r}") from None
        return self.check(value)


# Messages one send writes over one SMTP session: `mailflow send --count`, a lab's send step.
SEND_COUNT = Range("count", 1, 10_000)
BAD_ITEMS = Range("bad_items", 0, 100_000)
BAD_ITEM_LIMIT = Range("bad_item_limit", 0, 100_000)
CONNECTOR_COST = Range("cost", 1, 100)
CONNECTOR_ID = Range("connector id", 1, MAX_ID)
EVENT_AFTER = Range("after", 0, MAX_ID)
PAGE_LIMIT = Range("limit", 1, 100_000)
PAGE_OFFSET = Range("offset", 0, MAX_ID)
ADVANCE_SECONDS = Range("seconds", 0, MAX_ADVANCE_SECONDS, whole=False)
SIM_TIME = Range("a simulated time", 0, MAX_SIM_TIME, whole=False)
QUERY_SECONDS = Range("seconds", 0, MAX_SIM_TIME, whole=False)
# Issue 19: a DAG copy's copy and replay queue lengths (log files).
COPY_QUEUE = Range("copy_queue_length", 0, 1_000_000)
REPLAY_QUEUE = Range("replay_queue_length", 0, 1_000_000)
