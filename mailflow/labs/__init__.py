"""Scripted labs: a TOML timeline in, a checked ``LabPlan`` out (docs/labs.md).

A lab names a scenario (built-in or a path next to the lab file) or embeds
one as a ``[scenario]`` table, and lists ``[[steps]]``. Each step is a table
with exactly one action key: ``send``, ``move``, ``advance``, ``connector``,
``rpc``, ``service``, ``queue``, ``fault``, ``expect`` or ``wait_until``. Everything is
checked before anything starts; an error names the file, the step and the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from mailflow import scenarios
from mailflow.labs.checker import Checker, LabFileError, LabStep
from mailflow.scenarios.table import MAX_FILE_BYTES, document
from stores.topology import Scenario

MAX_STEPS = 1000
__all__ = ["LabFileError", "LabPlan", "LabStep", "builtin_names", "builtin_text", "load",
           "parse"]


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
    """A built-in lab by name, or else a lab file by path (a scenario path in it is relative
    to the file)."""
    if name_or_path in builtin_names():
        return parse(builtin_text(name_or_path), f"builtin:{name_or_path}", None)
    path = Path(name_or_path)
    try:
        with path.open("rb") as file:  # at most one byte more than allowed
            text = file.read(MAX_FILE_BYTES + 1).decode("utf-8")
    except OSError as exc:
        raise LabFileError(f"{name_or_path}: no such lab file or built-in lab ({exc.strerror});"
                           f" built-ins: {', '.join(builtin_names())}") from None
    except UnicodeDecodeError as exc:
        raise LabFileError(f"{name_or_path}: -: not UTF-8 text ({exc.reason})") from None
    return parse(text, name_or_path, path.parent)


def parse(text: str, source: str, base: Path | None) -> LabPlan:
    """Parse and check a lab file; ``source`` names it in errors. Nothing runs."""
    try:
        data = document(text, source)
    except scenarios.ScenarioError as exc:  # "{source}: -: {problem}", as every error here
        raise LabFileError(str(exc)) from None
    unknown = sorted(set(data) - {"name", "description", "scenario", "steps"})
    if unknown:
        raise LabFileError(f"{source}: {unknown[0]}: unknown key")
    for key in ("name", "description"):
        if key in data and not (isinstance(data[key], str) and len(data[key]) <= 1000
                                and data[key].isprintable()):
            raise LabFileError(f"{source}: {key}: expected one line of at most 1000 characters")
    scenario = _scenario(data.get("scenario", "mixed-2003"), source, base)
    steps = data.get("steps")
    if not isinstance(steps, list) or not 1 <= len(steps) <= MAX_STEPS:
        raise LabFileError(f"{source}: steps: a lab needs 1..{MAX_STEPS} [[steps]]")
    checker = Checker(source, scenario)
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
