"""The API's middlewares: every error as JSON, the Host header, and the bearer token.

In: each request on its way to its handler. Out: the handler's answer, or a JSON
``{"error": ..., "detail": ...}`` with a 4xx status (500 for a bug, logged, with
no traceback in the answer); a request whose ``Host`` is a name the lab was not
given (``--http-name``) is answered 421, against DNS rebinding; a request that
changes state (or, with ``--token-for-reads``, any request but ``/healthz``)
without ``Authorization: Bearer <token>`` is answered 401.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from mailflow.api.handle import json_response, lab
from mailflow.errors import LabError
from stores.machine import InvalidTransition

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error(status: int, error: str, detail: Any = None) -> web.Response:
    """The JSON answer of every error."""
    return json_response({"error": error, "detail": detail}, status=status)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Lab errors, refused transitions and HTTP errors as JSON; anything else a logged 500."""
    try:
        return await handler(request)
    except LabError as exc:
        return error(exc.status, str(exc))
    except InvalidTransition as exc:
        return error(409, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error(exc.status, exc.reason)
    except Exception:
        log.exception("API request %s %s failed", request.method, request.path)
        return error(500, "internal error")


# The names every lab answers to: a DNS-rebinding page can only reach us by a name it owns.
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain"})
# Liveness stays open, for a probe that cannot hold the token.
OPEN_PATHS = frozenset({"/healthz"})


def allowed_host(host: str, names: frozenset[str]) -> bool:
    """Whether a Host header (``name[:port]``, ``[v6]:port``) names the lab: an IP address
    (what a browser sends when no name was looked up), localhost, or one of ``names``."""
    name = host.strip().lower()
    if name.startswith("["):
        name = name[1:].partition("]")[0]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    name = name.rstrip(".")
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name in LOCAL_NAMES or name in names
    return True


@web.middleware
async def host_check(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse a request for a name the lab was not given (421 Misdirected Request)."""
    host = request.headers.get("Host")
    if host is not None and not allowed_host(host, lab(request).http_names):
        return error(421, "unknown Host", "start the lab with --http-name NAME to use a name")
    return await handler(request)


def api_path(path: str) -> bool:
    """Whether ``path`` is the API's (``/api/...``, ``/metrics``, ``/healthz``), not a page of
    the web interface (``mailflow.web``), which guards its own with a session."""
    return path.startswith("/api/") or path in ("/api", "/metrics", *OPEN_PATHS)


@web.middleware
async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Reads are open unless the lab wants the token for reads; every other method needs the
    lab's bearer token."""
    if not api_path(request.path):
        return await handler(request)  # the web interface's guard: a session and CSRF
    running = lab(request)
    reading = request.method in ("GET", "HEAD", "OPTIONS")
    if not reading or (running.token_for_reads and request.path not in OPEN_PATHS):
        expected = f"Bearer {running.token}".encode()
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return error(401, "missing or wrong bearer token",
                         "send Authorization: Bearer <token from <data>/api-token>")
    return await handler(request)
