"""Reading one TOML table of a scenario: every key checked for its type and its range.

In: a decoded TOML value, the file it came from and its key path (``servers[1]``); or,
for ``document``, the text of a whole scenario or lab file (``mailflow.labs`` too).
Out: typed values (or the decoded document), or ``ScenarioError`` as
``"{file}: {key}: {problem}"`` naming the key.
The ranges are documented in docs/scenarios.md.
"""

from __future__ import annotations

import math
import tomllib
from typing import Any

from mailflow.limits import bound_text

# Longest free text (names, display names, prefixes); site, server and connector names,
# which appear in queue ids, event lines and URL paths, are shorter (NAME_LENGTH).
TEXT_LENGTH = 256
NAME_LENGTH = 64
# A scenario or lab file is read whole: a bound on its size bounds its keys, strings and arrays.
MAX_FILE_BYTES = 1024 * 1024


class ScenarioError(ValueError):
    """A scenario that cannot be loaded; names the file, the key path and the problem."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        super().__init__(f"{file}: {key}: {problem}")
        self.file = file
        self.key = key
        self.problem = problem


def document(text: str, source: str) -> dict[str, Any]:
    """``text`` (a scenario or a lab file) decoded as TOML, or ``ScenarioError`` naming
    ``source`` with key ``-``: larger than MAX_FILE_BYTES, bad syntax, nested too deeply."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise ScenarioError(source, "-", f"larger than {MAX_FILE_BYTES} bytes")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(source, "-", f"TOML syntax error: {exc}") from None
    except RecursionError:  # tomllib recurses once per level of nested arrays or tables
        raise ScenarioError(source, "-", "arrays or tables nested too deeply") from None


def kind(value: object) -> str:
    """TOML's name for a value's type, for error messages."""
    names = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array"}
    return "table" if isinstance(value, dict) else names.get(type(value), type(value).__name__)


class Table:
    """One TOML table being read: rejects unknown keys and checks types, naming the key path."""

    def __init__(self, file: str, key: str, value: object, allowed: tuple[str, ...]) -> None:
        self.file, self.key = file, key
        if not isinstance(value, dict):
            raise ScenarioError(file, key or "-", f"expected a table, got {kind(value)}")
        self.data: dict[str, Any] = value
        for name in value:
            if name not in allowed:
                expected = ", ".join(allowed)
                raise self.error(name, f"unknown key (expected one of: {expected})")

    def path(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def error(self, name: str, problem: str) -> ScenarioError:
        return ScenarioError(self.file, self.path(name), problem)

    def get(self, name: str, default: Any, kinds: tuple[type, ...], what: str) -> Any:
        if name not in self.data:
            if default is None:
                raise self.error(name, "required key is missing")
            return default
        value = self.data[name]
        # bool is an int subclass in Python, but `port = true` is a mistake in TOML.
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise self.error(name, f"expected {what}, got {kind(value)}")
        return value

    def text(self, name: str, default: str | None = None, longest: int = TEXT_LENGTH) -> str:
        """A one-line string of 1..``longest`` characters (control characters refused, as
        names end up in event lines and headers)."""
        value: str = self.get(name, default, (str,), "a string")
        if not value.strip():
            raise self.error(name, "must not be empty")
        if len(value) > longest:
            raise self.error(name, f"at most {longest} characters, got {len(value)}")
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise self.error(name, "must not contain control characters (line breaks, tabs)")
        return value

    def integer(self, name: str, default: int | None, low: int, high: int) -> int:
        """A whole number in ``low..high``."""
        value: int = self.get(name, default, (int,), "an integer")
        if not low <= value <= high:
            raise self.error(name, f"must be {low}..{high}, got {value}")
        return value

    def number(self, name: str, whole: bool, low: float, high: float) -> int | float:
        """A required number in ``low..high``: an integer, or for ``whole=False`` a float too
        (a float is finite: ``inf`` and ``nan`` fall outside every range)."""
        if whole:
            return self.integer(name, None, int(low), int(high))
        value: int | float = self.get(name, None, (int, float), "a number")
        if not (math.isfinite(value) and low <= value <= high):
            raise self.error(name, f"must be {bound_text(low)}..{bound_text(high)}, got {value:g}")
        return float(value)

    def strings(self, name: str, default: list[str] | None = None, most: int = 100
                ) -> list[str]:
        """An array of at most ``most`` strings."""
        values: list[Any] = self.get(name, default, (list,), "an array of strings")
        if len(values) > most:
            raise self.error(name, f"at most {most} entries, got {len(values)}")
        for i, value in enumerate(values):
            if not isinstance(value, str):
                raise self.error(f"{name}[{i}]", f"expected a string, got {kind(value)}")
        return values

    def table(self, name: str, allowed: tuple[str, ...]) -> Table:
        return Table(self.file, self.path(name), self.data.get(name, {}), allowed)

    def tables(self, name: str, allowed: tuple[str, ...], most: int) -> list[Table]:
        """The entries of ``[[name]]``, at most ``most`` of them."""
        values = self.data.get(name, [])
        if not isinstance(values, list):
            raise self.error(name, f"expected an array of tables ([[{name}]]), got {kind(values)}")
        if len(values) > most:
            raise self.error(name, f"at most {most} entries, got {len(values)}")
        path = self.path(name)
        return [Table(self.file, f"{path}[{i}]", v, allowed) for i, v in enumerate(values)]
