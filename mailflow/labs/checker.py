"""Checking a lab file's steps: every key of every step, its type and its range.

In: one decoded ``[[steps]]`` table, its number and the lab's scenario.
Out: a ``LabStep`` whose arguments are checked (durations in seconds), or ``LabFileError``
as ``"{file}: step {n}: {key}: {problem}"``. docs/labs.md lists every key with its range.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mailflow import limits
from mailflow.cli.client import CliError, parse_duration
from mailflow.errors import Invalid
from mailflow.moves import versions
from mailflow.moves.common import ENGINES
from mailflow.smtp import faultrules
from stores.topology import CONNECTOR_TYPES, Scenario

# Simulated time one step may span (advance, wait_until.within, move.at): a lab moves its
# clock through every due time, so the span bounds its work.
MAX_SPAN = 30 * 86400.0
# wait_until checks at most this often (every >= 1 s) and at most this many times.
EVERY = (1.0, 86400.0)
MAX_CHECKS = 10_000
MAX_RECIPIENTS = 100
MAX_COUNT = 1_000_000  # expected depths, counts and event totals
NAME, TEXT = 64, 256
METRIC = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
VERBS = {"move": ("start", "complete", "fail", "suspend", "resume", "remove"),
         "connector": ("add", "remove"), "rpc": ("allow", "block"),
         "service": ("start", "stop"), "queue": ("retry", "freeze", "thaw"),
         # Issue 19: DAG databases and their copies.
         "db": ("lag", "suspend-copy", "resume-copy", "failover", "dismount", "mount"),
         # Issue 17: the ADC and edits of one site's 5.5 directory.
         "adc": ("run", "stop", "start"), "directory": ("edit",)}


class LabFileError(ValueError):
    """A lab file that cannot run; names the file, the step and the key."""


@dataclass(frozen=True)
class LabStep:
    """One ``[[steps]]`` table of a lab file: its action (``kind``) and checked arguments."""

    number: int
    kind: str
    args: dict[str, Any]


def _kind(value: object) -> str:
    names = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array"}
    return "table" if isinstance(value, dict) else names.get(type(value), type(value).__name__)


class Checker:
    """Checks the steps of one lab file in order, remembering the moves and sends named."""

    def __init__(self, source: str, scenario: Scenario) -> None:
        self.source, self.scenario = source, scenario
        self.moves: dict[str, int] = {}  # move name -> the step that started it
        self.sends: set[str] = set()
        self.mailboxes = {m.address for m in scenario.mailboxes}
        self.number, self.key = 0, "-"

    def fail(self, problem: str) -> LabFileError:
        return LabFileError(f"{self.source}: step {self.number}: {self.key}: {problem}")

    # -- one value each: the type, then the range -------------------------------------------

    def text(self, value: Any, longest: int = TEXT) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"expected a non-empty string, got {_kind(value)}")
        if len(value) > longest:
            raise self.fail(f"at most {longest} characters, got {len(value)}")
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise self.fail("must not contain control characters (line breaks, tabs)")
        return value

    def name(self, value: Any) -> str:
        return self.text(value, NAME)

    def whole(self, low: int, high: int) -> Callable[[Any], int]:
        def check(value: Any) -> int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.fail(f"expected an integer {low}..{high}, got {_kind(value)}")
            if not low <= value <= high:
                raise self.fail(f"must be {low}..{high}, got {value}")
            return value
        return check

    def within(self, limit: limits.Range) -> Callable[[Any], int]:
        """``whole`` for one of the ranges the API and the CLI share (``mailflow.limits``)."""
        return self.whole(int(limit.low), int(limit.high))

    def finite(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(f"expected a number, got {_kind(value)}")
        if not math.isfinite(value):
            raise self.fail(f"must be a finite number, got {value}")
        return value

    def flag(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.fail(f"expected true or false, got {_kind(value)}")
        return value

    def choice(self, *allowed: str) -> Callable[[Any], str]:
        def check(value: Any) -> str:
            if value not in allowed:
                raise self.fail(f"one of {', '.join(allowed)}, got {value!r}")
            return str(value)
        return check

    def duration(self, low: float, high: float) -> Callable[[Any], float]:
        """Seconds, or text such as "90s", "30m", "2h", "1d", in ``low..high``."""
        def check(value: Any) -> float:
            if isinstance(value, int | float) and not isinstance(value, bool):
                seconds = float(value)
            else:
                try:
                    seconds = parse_duration(self.text(value, 32))
                except CliError as exc:
                    raise self.fail(str(exc)) from None
            if not (math.isfinite(seconds) and low <= seconds <= high):
                raise self.fail(f"must be {low:g}..{high:.0f} seconds ({high / 86400:g} days),"
                                f" got {value!r}")
            return seconds
        return check

    def at(self, value: Any) -> str:
        """``"+DURATION"``: when a move starts, counted from the step."""
        if not isinstance(value, str) or not value.startswith("+"):
            raise self.fail("give +DURATION of simulated time, e.g. \"+30m\"")
        self.duration(0, MAX_SPAN)(value[1:])
        return value

    def server(self, value: Any) -> str:
        if not isinstance(value, str) or not self.scenario.has_server(value):
            known = ", ".join(s.name for s in self.scenario.servers)
            raise self.fail(f"unknown server {value!r} (known: {known})")
        return value

    def pair(self, one: Callable[[Any], str]) -> Callable[[Any], list[str]]:
        def check(value: Any) -> list[str]:
            if not isinstance(value, list) or len(value) != 2:
                raise self.fail("expected a pair, e.g. [\"A\", \"B\"]")
            return [one(v) for v in value]
        return check

    def site(self, value: Any) -> str:
        if not isinstance(value, str) or value.upper() not in (
                s.upper() for s in self.scenario.sites):
            raise self.fail(f"unknown site {value!r} (known: {', '.join(self.scenario.sites)})")
        return value

    def address(self, value: Any) -> str:
        address = self.text(value, 254)
        if "@" not in address or " " in address:
            raise self.fail(f"not an address: {address!r}")
        return address

    def recipients(self, value: Any) -> str | list[str]:
        if isinstance(value, list):
            if not 1 <= len(value) <= MAX_RECIPIENTS:
                raise self.fail(f"1..{MAX_RECIPIENTS} addresses, got {len(value)}")
            return [self.address(v) for v in value]
        return self.address(value)

    def mailbox(self, value: Any) -> str:
        if not isinstance(value, str) or value.lower() not in self.mailboxes:
            raise self.fail(f"no mailbox {value!r} in scenario {self.scenario.name}")
        return value

    def size(self, value: Any) -> int:
        # Anything larger than the endpoints' limit would only be refused (552).
        return self.whole(0, self.scenario.defaults.max_message_size)(value)

    def labels(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict) or len(value) > 20:
            raise self.fail("expected a table of at most 20 labels, e.g. { server = \"X\" }")
        for label, text in value.items():
            if isinstance(text, bool) or not isinstance(text, str | int):
                raise self.fail(f"label {label!r}: expected a string or an integer")
        return value

    def metric(self, value: Any) -> str:
        if not METRIC.fullmatch(self.text(value)):
            raise self.fail(f"not a metric name: {value!r}")
        return str(value)

    # -- the keys of each step ---------------------------------------------------------------

    def action_keys(self, kind: str, verb: str) -> dict[str, Callable[[Any], Any]]:
        """The keys an action step takes besides ``action``, each with its check."""
        if kind == "send":
            return {"to": self.recipients, "from": self.address,
                    "count": self.within(limits.SEND_COUNT), "via": self.server,
                    "subject": self.text, "size": self.size, "name": self.name}
        if kind == "move":
            if verb != "start":
                return {"name": self.name}
            return {"name": self.name, "mailbox": self.mailbox, "to": self.server,
                    "hold": self.flag, "at": self.at, "engine": self.choice(*ENGINES),
                    "online": self.flag, "bad_items": self.within(limits.BAD_ITEMS),
                    "bad_item_limit": self.within(limits.BAD_ITEM_LIMIT),
                    "suspend_when_ready": self.flag, "fail_at": self.name, "batch": self.name,
                    "suspend": self.flag, "suspend_comment": self.text}
        if kind == "connector":
            if verb == "remove":
                return {"name": self.name}
            return {"type": self.choice(*CONNECTOR_TYPES), "sites": self.pair(self.site),
                    "cost": self.within(limits.CONNECTOR_COST), "name": self.name}
        if kind == "rpc":
            return {"servers": self.pair(self.server)}
        if kind == "service":
            return {"server": self.server, "service": self.choice("mta")}
        if kind == "db":
            return {"database": self.name, "server": self.server,
                    "copy_queue": self.within(limits.COPY_QUEUE)}
        if kind == "adc":  # issue 17
            return {"agreement": self.name}
        if kind == "directory":
            return {"address": self.mailbox, "replica": self.site, "set": self.labels}
        return {"server": self.server, "queue": self.name}

    def check_keys(self, kind: str, subject: str) -> dict[str, Callable[[Any], Any]]:
        """The keys a check of ``subject`` takes (``kind`` is expect or wait_until)."""
        count = self.whole(0, MAX_COUNT)
        keys: dict[str, dict[str, Callable[[Any], Any]]] = {
            "queue": {"queue": self.queue, "depth": count, "status": self.name},
            "mailbox": {"mailbox": self.mailbox, "count": count, "server": self.server,
                        "in_transit": self.flag},
            "move": {"move": self.started, "status": self.name, "status_detail": self.name},
            "event": {"event": self.whole(1, 65535), "at_least": count, "server": self.server},
            "metric": {"metric": self.metric, "labels": self.labels, "value": self.finite,
                       "at_least": self.finite},
            "trace": {"trace": self.sent, "stage": self.name, "detail": self.text},
            "audit": {"audit": self.choice("clean")},
        }
        wait = {"within": self.duration(0, MAX_SPAN), "every": self.duration(*EVERY)}
        return keys[subject] | (wait if kind == "wait_until" else {})

    def queue(self, value: Any) -> str:
        server, _, queue = self.text(value).partition("/")
        self.server(server)
        if not queue:
            raise self.fail("write SERVER/QUEUE")
        return str(value)

    def started(self, value: Any) -> str:
        if value not in self.moves:
            raise self.fail(f"no move {value!r} started before")
        return str(value)

    def sent(self, value: Any) -> str:
        if value not in self.sends:
            raise self.fail(f"no send named {value!r} before")
        return str(value)

    def checked(self, kind: str, value: dict[str, Any], keys: dict[str, Callable[[Any], Any]],
                required: tuple[str, ...]) -> dict[str, Any]:
        """``value`` with each key checked; unknown and missing keys are errors."""
        args = {}
        for key in required:
            if key not in value:
                self.key = f"{kind}.{key}"
                raise self.fail("required")
        for key, item in value.items():
            self.key = f"{kind}.{key}"
            if key not in keys:
                raise self.fail("unknown key (expected one of: " + ", ".join(keys) + ")")
            args[key] = keys[key](item)
        return args

    # -- a whole step ------------------------------------------------------------------------

    def step(self, number: int, raw: Any) -> LabStep:
        """Step ``number`` of the file, checked; the steps are checked in order."""
        self.number, self.key = number, "-"
        kinds = ("send", *VERBS, "advance", "fault", "expect", "wait_until")
        if not isinstance(raw, dict):
            raise self.fail("a step is a table")
        if len(raw) != 1 or next(iter(raw)) not in kinds:
            self.key = ",".join(raw) or "-"
            raise self.fail("a step has exactly one of: " + ", ".join(kinds))
        kind, value = next(iter(raw.items()))
        self.key = kind
        if kind == "advance":
            return LabStep(number, kind, {"seconds": self.duration(0, MAX_SPAN)(value)})
        if not isinstance(value, dict):
            raise self.fail("expected a table, e.g. { ... }")
        if kind in ("expect", "wait_until"):
            return LabStep(number, kind, self.check(kind, value))
        if kind == "fault":
            return LabStep(number, kind, self.fault(value))
        return LabStep(number, kind, self.action(kind, value))

    def fault(self, value: dict[str, Any]) -> dict[str, Any]:
        """``{ clear = true }``, or a rule as in ``[[faults]]`` (docs/faults.md)."""
        if "clear" in value:
            if value != {"clear": True}:
                raise self.fail("write { clear = true } alone to remove every rule")
            return {"clear": True}
        try:
            faultrules.rule(value, tuple(s.name for s in self.scenario.servers))
        except ValueError as exc:
            key, _, problem = str(exc).partition(": ")
            self.key = f"fault.{key}"
            raise self.fail(problem) from None
        return {"rule": dict(value)}  # posted as written: the API checks it the same way

    def action(self, kind: str, value: dict[str, Any]) -> dict[str, Any]:
        verb = ""
        if kind in VERBS:
            self.key = f"{kind}.action"
            verb = self.choice(*VERBS[kind])(value.get("action"))
        rest = {k: v for k, v in value.items() if k != "action"}
        args = self.checked(kind, rest, self.action_keys(kind, verb), REQUIRED.get(f"{kind} {verb}",
                                                                                 ()))
        if kind == "move":
            self.key = "move.name"
            if verb != "start":
                self.started(args["name"])
            else:
                self.version_rule(args)
            if verb == "start" and args["name"] in self.moves:
                raise self.fail(f"a move named {args['name']!r} was already started at step"
                                f" {self.moves[args['name']]}")
            self.moves.setdefault(args["name"], self.number)
        if kind == "send" and "name" in args:
            self.sends.add(args["name"])
        return {"action": verb, **args} if verb else args

    def version_rule(self, args: dict[str, Any]) -> None:
        """A move start the version rules refuse (``mailflow.moves.versions``), from where the
        scenario puts the mailbox, is refused when the file is read."""
        home = next(m.server for m in self.scenario.mailboxes
                    if m.address.lower() == args["mailbox"].lower())
        try:
            versions.rule(self.scenario.server(home).version,
                          self.scenario.server(args["to"]).version, args.get("engine"),
                          args.get("online"))
        except Invalid as exc:
            self.key = "move.to"
            raise self.fail(str(exc)) from None

    def check(self, kind: str, value: dict[str, Any]) -> dict[str, Any]:
        subjects = [c for c in COMPARED if c in value]
        if len(subjects) != 1:
            raise self.fail("checks exactly one of: " + ", ".join(COMPARED))
        subject = subjects[0]
        args = self.checked(kind, value, self.check_keys(kind, subject), ())
        self.key = kind
        if COMPARED[subject] and not any(key in args for key in COMPARED[subject]):
            raise self.fail(f"a {subject} check compares one of: "
                            + ", ".join(COMPARED[subject]))
        if kind == "wait_until":
            args.setdefault("within", 3600.0)
            args.setdefault("every", 60.0)
            if args["within"] > args["every"] * MAX_CHECKS:
                self.key = "wait_until.every"
                raise self.fail(f"checks at most {MAX_CHECKS} times: within / every is"
                                f" {args['within'] / args['every']:g}")
        return args


# What each kind of check looks at, and the keys it compares (at least one is needed).
COMPARED: dict[str, tuple[str, ...]] = {
    "queue": ("depth", "status"), "mailbox": ("count", "server", "in_transit"),
    "move": ("status", "status_detail"), "event": (), "metric": ("value", "at_least"),
    "trace": ("stage",), "audit": (),
}
# Keys an action needs, by "KIND VERB".
REQUIRED: dict[str, tuple[str, ...]] = {
    "send ": ("to",), "move start": ("name", "mailbox", "to"), "move complete": ("name",),
    "move fail": ("name",), "move suspend": ("name",), "move resume": ("name",),
    "move remove": ("name",), "connector add": ("sites",), "connector remove": ("name",),
    "rpc allow": ("servers",), "rpc block": ("servers",), "service start": ("server",),
    "service stop": ("server",), "queue retry": ("server", "queue"),
    "queue freeze": ("server", "queue"), "queue thaw": ("server", "queue"),
    "db lag": ("database", "server", "copy_queue"), "db suspend-copy": ("database", "server"),
    "db resume-copy": ("database", "server"), "db failover": ("database", "server"),
    "db dismount": ("database",), "db mount": ("database",),
    "directory edit": ("address", "replica", "set"),
}
