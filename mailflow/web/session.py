"""Login, sessions, CSRF and the guard every page passes: the web interface's security.

In: every request for a path of the web interface (not ``/api/``, ``/metrics``,
``/healthz``, which the API's own middlewares guard). Out: the login form and
``POST /login`` (the lab's API token in, an HttpOnly, SameSite=Strict session
cookie out, its random id kept in memory only), ``POST /logout``; the guard,
which refuses any POST without a session (401) or with a wrong CSRF token (403),
asks for a login before reads when the lab wants the token for reads, answers
every error as a readable page (4xx; a bug is a logged 500 without traceback)
and adds the Content-Security-Policy (no inline scripts or styles) to every page.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from mailflow.api.middleware import api_path
from mailflow.errors import LabError
from mailflow.web.common import (
    COOKIE,
    CSRF_FIELD,
    REVISION,
    SESSIONS,
    csrf_token,
    field,
    form,
    live,
    local_path,
    page,
)
from stores.machine import InvalidTransition
from stores.revision import revision

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

OPEN_PATHS = ("/login", "/static/")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self';"
    " img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none';"
    " frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

routes = web.RouteTableDef()




def _check(request: web.Request, fields: dict[str, str] | None) -> None:
    """Refuse an action without a login or with a wrong CSRF token, and a read without a
    login when the lab wants the token for reads."""
    token = csrf_token(request)
    if request.path.startswith(OPEN_PATHS):
        return
    if fields is not None:
        if token is None:
            raise web.HTTPUnauthorized(reason="log in first: every action needs the API token")
        if not hmac.compare_digest(fields.get(CSRF_FIELD, "").encode(), token.encode()):
            raise web.HTTPForbidden(reason="the form's CSRF token is missing or stale;"
                                    " reload the page and try again")
    elif token is None and live(request).token_for_reads:
        raise web.HTTPSeeOther(f"/login?next={request.path}")


def error_page(request: web.Request, status: int, message: str) -> web.Response:
    return page(request, "error.html", {"title": f"Error {status}", "status": status,
                                        "message": message}, status=status)


def _not_found_for_a_program(request: web.Request) -> bool:
    """A path that is no page, asked for by a client that does not want HTML (curl, the
    CLI): the API's JSON 404 serves it better than a page."""
    nothing = request.match_info.http_exception is not None
    return nothing and "text/html" not in request.headers.get("Accept", "")


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Sessions and CSRF, errors as pages and the security headers, for web paths only."""
    if api_path(request.path) or _not_found_for_a_program(request):
        return await handler(request)  # the API's middlewares answer (JSON)
    try:
        reading = request.method in ("GET", "HEAD")
        _check(request, None if reading else await form(request))
        if request.method == "GET" and not request.path.startswith(("/static/", "/live")):
            # Before the page's reads: /live then redraws whatever commits after them.
            REVISION.set(await live(request).store.read(revision))
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            exc.headers.update(SECURITY_HEADERS)
            raise
        response = error_page(request, exc.status, exc.reason)
    except LabError as exc:
        response = error_page(request, exc.status, str(exc))
    except InvalidTransition as exc:
        response = error_page(request, 409, str(exc))
    except Exception:
        log.exception("web request %s %s failed", request.method, request.path)
        response = error_page(request, 500, "internal error (logged by the lab)")
    if not response.prepared:
        response.headers.update(SECURITY_HEADERS)
    return response


@routes.get("/login")
async def login_form(request: web.Request) -> web.Response:
    return page(request, "login.html", {"title": "Log in",
                                        "next": local_path(request.query.get("next", "/"))})


@routes.post("/login")
async def login(request: web.Request) -> web.Response:
    fields = await form(request)
    given = field(fields, "token", "").encode()
    target = local_path(fields.get("next", "/"))
    if not hmac.compare_digest(given, live(request).token.encode()):
        return page(request, "login.html", {"title": "Log in", "next": target,
                                            "failed": True}, status=401)
    sessions = request.app[SESSIONS]
    sessions.close(request.cookies.get(COOKIE))
    sid, _ = sessions.open()
    answer = web.HTTPSeeOther(target)
    answer.set_cookie(COOKIE, sid, httponly=True, samesite="Strict", path="/")
    raise answer


@routes.post("/logout")
async def logout(request: web.Request) -> web.Response:
    request.app[SESSIONS].close(request.cookies.get(COOKIE))
    answer = web.HTTPSeeOther("/")
    answer.del_cookie(COOKIE, path="/")
    raise answer
