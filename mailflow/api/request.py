"""Request parsing for the API's handlers: a request in, checked values out.

In: the query string (paging, flags, seconds) and the JSON body of a request.
Out: typed values, or ``mailflow.errors.Invalid`` (a 400 naming the field) for
anything malformed, out of range (the ranges are ``mailflow.limits``'), nested too
deep, or of the wrong JSON type.
"""

from __future__ import annotations

import json
import math
from typing import Any, TypeGuard

from aiohttp import web

from mailflow import limits
from mailflow.errors import Invalid
from mailflow.limits import Range


def query_number(request: web.Request, name: str, default: str, limit: Range) -> int:
    """A whole number of ``limit``'s range from the query string."""
    try:
        return int(limit.parse(request.query.get(name, default)))
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def page(request: web.Request) -> tuple[int, int]:
    """``limit`` and ``offset`` from the query string (defaults 1000 and 0)."""
    return (query_number(request, "limit", "1000", limits.PAGE_LIMIT),
            query_number(request, "offset", "0", limits.PAGE_OFFSET))


async def body(request: web.Request) -> dict[str, Any]:
    """The JSON object the request carries ({} without a body), nested at most
    ``MAX_JSON_DEPTH`` deep."""
    if not request.can_read_body:
        return {}
    try:
        doc = json.loads(await request.text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Invalid(f"malformed JSON: {exc}") from exc
    except RecursionError:  # the decoder's own limit, far deeper than ours
        doc = None
    if doc is None or _depth(doc) > limits.MAX_JSON_DEPTH:
        raise Invalid(f"JSON nested more than {limits.MAX_JSON_DEPTH} levels deep")
    if not isinstance(doc, dict):
        raise Invalid("the body must be a JSON object")
    return doc


def _depth(doc: object) -> int:
    """How deep a decoded JSON document nests (iterative: the decoder allows ~1000 levels)."""
    deepest, todo = 0, [(doc, 1)]
    while todo:
        value, level = todo.pop()
        children = (value.values() if isinstance(value, dict)
                    else value if isinstance(value, list) else None)
        if children is None:
            continue
        deepest = max(deepest, level)
        if deepest > limits.MAX_JSON_DEPTH:
            break
        todo.extend((child, level + 1) for child in children)
    return deepest


def number(doc: dict[str, Any], key: str, limit: Range, default: object = None) -> float:
    """A JSON number of ``limit``'s range (``default`` when absent)."""
    try:
        return limit.check(doc.get(key, default))
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def is_number(value: object) -> TypeGuard[float]:
    """A finite JSON number (json.loads reads NaN, Infinity and 1e400 as floats)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def time_field(doc: dict[str, Any], key: str) -> float | None:
    """An optional simulated time (epoch seconds, ``limits.SIM_TIME``)."""
    if doc.get(key) is None:
        return None
    if not is_number(doc[key]):
        raise Invalid(f"{key} must be simulated epoch seconds")
    return float(number(doc, key, limits.SIM_TIME))


def flag(doc: dict[str, Any], key: str, default: bool) -> bool:
    """A JSON boolean."""
    value = doc.get(key, default)
    if not isinstance(value, bool):
        raise Invalid(f"{key} must be true or false")
    return value


def count(doc: dict[str, Any], key: str, limit: Range) -> int | None:
    """An optional whole number of ``limit``'s range."""
    if doc.get(key) is None:
        return None
    return int(number(doc, key, limit))


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
    if not math.isfinite(seconds) or not 0 <= seconds <= limits.QUERY_SECONDS.high:
        raise Invalid(f"{name} must be a number of seconds, 0..{int(limits.QUERY_SECONDS.high)}")
    return seconds
