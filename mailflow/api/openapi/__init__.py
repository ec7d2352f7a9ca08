"""The OpenAPI 3 description of ``/api/v1``, served at ``/api/v1/openapi.json``.

In: the JSON files of this package: ``base.json`` (info, shared components) and one
fragment per resource (``paths``, and ``components`` of its own), written by hand. Out:
``document()``, the fragments merged into one description, and the route that serves it.
A new resource adds its own fragment file here, and nothing else: the fragments are found
by name, and a path or component defined twice is an error (``tests/test_openapi.py``
also checks that every route under /api/v1 is described).
"""

from __future__ import annotations

import copy
import functools
import json
from importlib import resources
from typing import Any

from aiohttp import web

from mailflow.api.handle import V1, json_response

BASE = "base.json"

routes = web.RouteTableDef()


def _merge(into: dict[str, Any], fragment: dict[str, Any], name: str) -> None:
    """Add ``fragment``'s paths and components to ``into``; twice is an error."""
    unknown = set(fragment) - {"paths", "components"}
    if unknown:
        raise ValueError(f"{name}: only paths and components, not {sorted(unknown)}")
    sections = [(into["paths"], fragment.get("paths", {}))]
    for kind, entries in fragment.get("components", {}).items():
        sections.append((into["components"].setdefault(kind, {}), entries))
    for target, entries in sections:
        for key, value in entries.items():
            if key in target:
                raise ValueError(f"{name}: {key} is defined twice")
            target[key] = value


@functools.cache
def _document() -> dict[str, Any]:
    files = resources.files(__name__)
    doc: dict[str, Any] = json.loads(files.joinpath(BASE).read_text("utf-8"))
    fragments = sorted(entry.name for entry in files.iterdir()
                       if entry.name.endswith(".json") and entry.name != BASE)
    for name in fragments:
        _merge(doc, json.loads(files.joinpath(name).read_text("utf-8")), name)
    return doc


def document() -> dict[str, Any]:
    """The whole description (a copy: callers may change it)."""
    return copy.deepcopy(_document())


@routes.get(f"{V1}/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return json_response(_document())
