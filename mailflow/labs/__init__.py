"""Scripted labs: a TOML timeline in, a checked ``LabPlan`` out (docs/labs.md).

A lab names a scenario (built-in or a path next to the lab file) or embeds
one as a ``[scenario]`` table, and lists ``[[steps]]``. Each step is a table
with exactly one action key: ``send``, ``move``, ``advance``, ``connector``,
``rpc``, ``service``, ``queue``, ``expect`` or ``wait_until``. Everything is
checked before anything starts; an error names the file, the step and the key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from mailflow import scenarios
from mailflow.cli.client import CliError, parse_duration
from stores.topology import Scenario

ACTIONS: dict[str, tuple[str, ...]] = {
    "send": ("to", "from", "count", "via", "subject", "size", "name"),
    "move": ("action", "name", "mailbox", "to", "hold", "at", "engine", "online", "bad_items",
             "bad_item_limit", "suspend_when_ready", "fail_at", "batch"),
    "connector": ("action", "type", "sites", "cost", "name"),
    "rpc": ("action", "servers"),
    "service": ("action", "server", "service"),
    "queue": ("action", "server", "queue"),
}
CHECK_KEYS = ("queue", "depth", "status", "mailbox", "count", "server", "in_transit", "move",
              "status_detail", "event", "at_least", "metric", "labels", "value", "trace",
              "stage", "detail", "audit")
# What each kind of check looks at, and the keys it compares (at least one is needed).
CHECKS: dict[str, tuple[str, ...]] = {
    "queue": ("depth", "status"), "mailbox": ("count", "server", "in_transit"),
    "move": ("status", "status_detail"), "event": ("at_least", "server", "event"),
    "metric": ("value", "at_least"), "trace": ("stage",), "audit": ("audit",),
}
WAIT_KEYS = ("within", "every")
VERBS = {"move": ("start", "complete", "fail", "suspend", "resume", "remove"),
         "connector": ("add", "remove"), "rpc": ("allow", "block"),
         "service": ("start", "stop"), "queue": ("retry", "freeze", "thaw")}


class LabFileError(ValueError):
    """A lab file that cannot run; names the file, the step and the key."""


@dataclass(frozen=True)
class LabStep:
    """One ``[[steps]]`` table of a lab file: its action (``kind``) and checked arguments."""

    number: int
    kind: str
    args: dict[str, Any]


@dataclass(frozen=True)
class LabPlan:
    name: str
    description: str
    scenario: Scenario
    steps: tuple[LabStep, ...]
    source: str


def builtin_names() -> list[str]:
    return sorted(e.name.removesuffix(".toml") for e in resources.files(__name__).iterdir()
                  if e.name.endswith(".toml"))


def builtin_text(name: str) -> str:
    return resources.files(__name__).joinpath(f"{name}.toml").read_text("utf-8")


def load(name_or_path: str) -> LabPlan:
    if name_or_path in builtin_names():
        return parse(builtin_text(name_or_path), f"builtin:{name_or_path}", None)
    path = Path(name_or_path)
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise LabFileError(f"{name_or_path}: no such lab file or built-in lab ({exc.strerror});"
                       f" built-ins: {', '.join(builtin_names())}") from None
    return parse(text, name_or_path, path.parent)


def parse(text: str, source: str, base: Path | None) -> LabPlan:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LabFileError(f"{source}: TOML syntax error: {exc}") from None
    unknown = sorted(set(data) - {"name", "description", "scenario", "steps"})
    if unknown:
        raise LabFileError(f"{source}: {unknown[0]}: unknown key")
    scenario = _scenario(data.get("scenario", "mixed-2003"), source, base)
    steps = data.get("steps")
    if not isinstance(steps, list) or not steps:
        raise LabFileError(f"{source}: steps: a lab needs [[steps]]")
    checker = _Checker(source, scenario)
    plan = tuple(checker.step(n, raw) for n, raw in enumerate(steps, 1))
    return LabPlan(str(data.get("name", source)), str(data.get("description", "")), scenario,
                   plan, text)


def _scenario(value: Any, source: str, base: Path | None) -> Scenario:
    try:
        if isinstance(value, dict):
            return scenarios.parse(_to_toml(value), f"{source} [scenario]")
        if not isinstance(value, str):
            raise LabFileError(f"{source}: scenario: a name, a path or a [scenario] table")
        if value in scenarios.builtin_names() or base is None:
            return scenarios.load(value)
        return scenarios.load(str(base / value))
    except scenarios.ScenarioError as exc:
        raise LabFileError(f"{source}: scenario: {exc}") from None


def _to_toml(table: dict[str, Any], prefix: str = "") -> str:
    """Write an embedded scenario back as TOML, the form the scenario loader reads and keeps."""
    lines: list[str] = []
    nested: list[str] = []
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            nested.append(f"[{name}]\n{_to_toml(value, name + '.')}")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            nested.extend(f"[[{name}]]\n{_to_toml(v, name + '.')}" for v in value)
        else:
            lines.append(f"{key} = {_value(value)}")
    return "\n".join(lines + nested) + "\n"


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return repr(value)


class _Checker:
    def __init__(self, source: str, scenario: Scenario) -> None:
        self.source = source
        self.scenario = scenario
        self.moves: set[str] = set()
        self.sends: set[str] = set()

    def fail(self, number: int, key: str, problem: str) -> LabFileError:
        return LabFileError(f"{self.source}: step {number}: {key}: {problem}")

    def step(self, number: int, raw: Any) -> LabStep:
        if not isinstance(raw, dict):
            raise self.fail(number, "-", "a step is a table")
        kinds = [k for k in raw if k in (*ACTIONS, "advance", "expect", "wait_until")]
        if len(kinds) != 1 or len(raw) != 1:
            raise self.fail(number, ",".join(raw) or "-", "a step has exactly one of: "
                            + ", ".join((*ACTIONS, "advance", "expect", "wait_until")))
        kind = kinds[0]
        value = raw[kind]
        if kind == "advance":
            return LabStep(number, kind, {"seconds": self.duration(number, "advance", value)})
        if not isinstance(value, dict):
            raise self.fail(number, kind, "expected a table, e.g. { ... }")
        if kind in ("expect", "wait_until"):
            return LabStep(number, kind, self.check(number, kind, value))
        self.keys(number, kind, value, ACTIONS[kind])
        if kind in VERBS and value.get("action") not in VERBS[kind]:
            raise self.fail(number, f"{kind}.action", f"one of {', '.join(VERBS[kind])}")
        for key in ("via", "server", "to"):
            if key in value and not (kind == "send" and key == "to"):
                self.server(number, f"{kind}.{key}", value[key])
        for key in ("servers",):
            for server in value.get(key, []):
                self.server(number, f"{kind}.{key}", server)
        if kind == "move":
            self.move_step(number, value)
        if kind == "send":
            if "to" not in value:
                raise self.fail(number, "send.to", "required")
            if "name" in value:
                self.sends.add(str(value["name"]))
        return LabStep(number, kind, value)

    def move_step(self, number: int, value: dict[str, Any]) -> None:
        name = value.get("name")
        if not isinstance(name, str):
            raise self.fail(number, "move.name", "every move step names its move")
        if value["action"] == "start":
            for key in ("mailbox", "to"):
                if key not in value:
                    raise self.fail(number, f"move.{key}", "required to start a move")
            self.moves.add(name)
        elif name not in self.moves:
            raise self.fail(number, "move.name", f"no move {name!r} was started before")
        if "at" in value:
            at = str(value["at"])
            if not at.startswith("+"):
                raise self.fail(number, "move.at", "give +DURATION of simulated time")
            self.duration(number, "move.at", at[1:])

    def keys(self, number: int, kind: str, value: dict[str, Any], allowed: tuple[str, ...]
             ) -> None:
        for key in value:
            if key not in allowed:
                raise self.fail(number, f"{kind}.{key}", "unknown key (expected one of: "
                                + ", ".join(allowed) + ")")

    def server(self, number: int, key: str, name: Any) -> None:
        if not isinstance(name, str) or not self.scenario.has_server(name):
            raise self.fail(number, key, f"unknown server {name!r}")

    def duration(self, number: int, key: str, value: Any) -> float:
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return float(value)
        try:
            return parse_duration(str(value))
        except CliError as exc:
            raise self.fail(number, key, str(exc)) from None

    def check(self, number: int, kind: str, value: dict[str, Any]) -> dict[str, Any]:
        self.keys(number, kind, value, CHECK_KEYS + (WAIT_KEYS if kind == "wait_until" else ()))
        subjects = [c for c in CHECKS if c in value]
        if len(subjects) != 1:
            raise self.fail(number, kind, "checks exactly one of: " + ", ".join(CHECKS))
        subject = subjects[0]
        if not any(key in value for key in CHECKS[subject]):
            raise self.fail(number, kind, f"a {subject} check compares one of: "
                            + ", ".join(CHECKS[subject]))
        if subject == "queue":
            server, _, queue = str(value["queue"]).partition("/")
            self.server(number, f"{kind}.queue", server)
            if not queue:
                raise self.fail(number, f"{kind}.queue", "write SERVER/QUEUE")
        if subject == "move" and value["move"] not in self.moves:
            raise self.fail(number, f"{kind}.move", f"no move {value['move']!r} started before")
        if subject == "trace" and value["trace"] not in self.sends:
            raise self.fail(number, f"{kind}.trace", f"no send named {value['trace']!r} before")
        if subject == "audit" and value["audit"] != "clean":
            raise self.fail(number, f"{kind}.audit", 'the only audit check is "clean"')
        if "server" in value:
            self.server(number, f"{kind}.server", value["server"])
        checked = dict(value)
        if kind == "wait_until":
            checked["within"] = self.duration(number, "within", value.get("within", "1h"))
            checked["every"] = self.duration(number, "every", value.get("every", "1m"))
        return checked
