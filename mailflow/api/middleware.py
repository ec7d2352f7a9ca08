"""The API's middlewares: every error as JSON, and the bearer token on every change.

In: each request on its way to its handler. Out: the handler's answer, or a JSON
``{"error": ..., "detail": ...}`` with a 4xx status (500 for a bug, logged, with
no traceback in the answer); a request that changes state without
``Authorization: Bearer <token>`` is answered 401.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from mailflow.api.handle import lab
from mailflow.errors import LabError
from stores.machine import InvalidTransition

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error(status: int, error: str, detail: Any = None) -> web.Response:
    """The JSON answer of every error."""
    return web.json_response({"error": error, "detail": detail}, status=status)


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


@web.middleware
async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Reads are open; every other method needs the lab's bearer token."""
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        expected = f"Bearer {lab(request).token}".encode()
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return error(401, "missing or wrong bearer token",
                         "send Authorization: Bearer <token from <data>/api-token>")
    return await handler(request)
