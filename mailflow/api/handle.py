"""The lab as the API sees it: the ``LabHandle`` protocol, and how a handler reaches it.

In: the running lab, stored on the aiohttp application under ``LAB``. Out: to
every handler, ``lab(request)`` (the store, scenario, clock, registry, token
and the few actions the API asks of the lab) and ``read`` (one store read
answered as JSON), and ``json_response``, the one way an answer becomes JSON.
The API names the lab only through this protocol, so
``mailflow.api`` never imports ``mailflow.runtime``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry

from mailflow.smtp.faults import FaultBook
from stores.backend import Backend
from stores.clock import Clock
from stores.topology import Scenario

# Every resource but /metrics and /healthz lives under this prefix.
V1 = "/api/v1"


class Changes(Protocol):
    """Committed changes to wait on (``mailflow.runtime.changes``)."""

    @property
    def generation(self) -> int: ...

    @property
    def closed(self) -> bool: ...

    async def wait(self, after: int, timeout: float) -> int: ...


class LabHandle(Protocol):
    """What the API's handlers use of a running lab."""

    @property
    def store(self) -> Backend: ...

    @property
    def scenario(self) -> Scenario: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def registry(self) -> CollectorRegistry: ...

    @property
    def token(self) -> str: ...

    @property
    def token_for_reads(self) -> bool: ...

    @property
    def http_names(self) -> frozenset[str]: ...

    @property
    def http_url(self) -> str: ...

    @property
    def endpoints(self) -> Mapping[str, object]: ...

    @property
    def faults(self) -> FaultBook: ...

    @property
    def changes(self) -> Changes: ...

    def endpoint_address(self, server: str) -> tuple[str, int]: ...

    def endpoint_addresses(self) -> dict[str, tuple[str, int]]: ...

    async def processes(self) -> list[dict[str, Any]]: ...

    async def settle(self) -> None: ...

    async def advance(self, seconds: float) -> float: ...


LAB: web.AppKey[LabHandle] = web.AppKey("lab")


def lab(request: web.Request) -> LabHandle:
    """The lab this request's application serves."""
    return request.app[LAB]


async def read(request: web.Request, fn: Callable[..., Any], *args: Any) -> web.Response:
    """``fn(conn, *args)`` read from the store, answered as JSON."""
    result = await lab(request).store.read(lambda conn: fn(conn, *args))
    return json_response(result)


def _dumps(doc: Any) -> str:
    return json.dumps(doc) + "\n"


def json_response(doc: Any, status: int = 200) -> web.Response:
    """``doc`` as the JSON body of every API answer: one line that ends with a newline, so
    that ``curl`` output and shells' prompts do not run together."""
    return web.json_response(doc, status=status, dumps=_dumps)
