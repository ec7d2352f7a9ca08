"""Request parsing for the API's handlers: a request in, checked values out.

In: the query string (paging, flags, seconds) and the JSON body of a request.
Out: typed values, or ``mailflow.errors.Invalid`` (a 400 naming the field) for
anything malformed, out of range, or of the wrong JSON type.
"""

from __future__ import annotations

import json
import math
from typing import Any, TypeGuard

from aiohttp import web

from mailflow.errors import Invalid

MAX_LIMIT = 100_000
# SQLite's integers are 64-bit.
MAX_OFFSET = 2**63 - 1


def page(request: web.Request) -> tuple[int, int]:
    """``limit`` and ``offset`` from the query string (defaults 1000 and 0)."""
    try:
        limit = int(request.query.get("limit", "1000"))
        offset = int(request.query.get("offset", "0"))
    except ValueError as exc:
        raise Invalid("limit and offset must be whole numbers") from exc
    if not 0 < limit <= MAX_LIMIT or not 0 <= offset <= MAX_OFFSET:
        raise Invalid(f"limit must be 1..{MAX_LIMIT} and offset 0..{MAX_OFFSET}")
    return limit, offset


async def body(request: web.Request) -> dict[str, Any]:
    """The JSON object the request carries ({} without a body)."""
    if not request.can_read_body:
        return {}
    try:
        doc = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Invalid(f"malformed JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise Invalid("the body must be a JSON object")
    return doc


def is_number(value: object) -> TypeGuard[float]:
    """A finite JSON number (json.loads reads NaN, Infinity and 1e400 as floats)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def time_field(doc: dict[str, Any], key: str) -> float | None:
    """An optional simulated time (epoch seconds)."""
    value = doc.get(key)
    if value is None:
        return None
    if not is_number(value):
        raise Invalid(f"{key} must be simulated epoch seconds")
    return float(value)


def flag(doc: dict[str, Any], key: str, default: bool) -> bool:
    """A JSON boolean."""
    value = doc.get(key, default)
    if not isinstance(value, bool):
        raise Invalid(f"{key} must be true or false")
    return value


def count(doc: dict[str, Any], key: str) -> int | None:
    """An optional whole number >= 0."""
    value = doc.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or value < 0):
        raise Invalid(f"{key} must be a whole number >= 0")
    return value


def text(doc: dict[str, Any], key: str, default: str | None = None) -> str:
    """A string (required unless ``default`` is given)."""
    value = doc.get(key, default)
    if not isinstance(value, str):
        raise Invalid(f"{key} must be a string")
    return value


def optional_text(doc: dict[str, Any], key: str) -> str | None:
    """A string or null."""
    return None if doc.get(key) is None else text(doc, key)


def query_flag(value: str | None, name: str, default: bool) -> bool:
    """A query-string boolean: true/1/yes or false/0/no."""
    if value is None:
        return default
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise Invalid(f"{name} must be true or false")


def query_seconds(value: str | None, name: str) -> float | None:
    """An optional query-string number of seconds >= 0."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError as exc:
        raise Invalid(f"{name} must be a number of seconds") from exc
    if not math.isfinite(seconds) or seconds < 0:
        raise Invalid(f"{name} must be a number of seconds >= 0")
    return seconds
