"""What every page module of the web interface shares: the lab, rendering, forms, paging.

In: a request. Out: the running lab (``live``), a rendered page (``page``), the
submitted form (``form``), checked numbers from text (``whole``), a page of
rows (``Pager``) and the redirect after a successful action (``done``). The
lab is named only through the API's ``LabHandle`` (with its feed of committed changes).
"""

from __future__ import annotations

import datetime
import math
import secrets
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from mailflow.api.handle import LabHandle
from mailflow.errors import Invalid
from mailflow.limits import Range

COOKIE = "mailflow_session"
CSRF_FIELD = "csrf"
MAX_SESSIONS = 256
# The sections of the navigation.
NAV = (("/", "Organization"), ("/queues", "Queue Viewer"), ("/moves", "Moves"),
       ("/mailboxes", "Mailboxes"), ("/events", "Events"), ("/clock", "Clock"),
       ("/adc", "Directory replicas (ADC)"), ("/databases", "Databases (DAG)"))
# The store's revision the guard read before this request's page read anything
# (stores.revision); the page hands it to /live, which redraws what committed after.
REVISION: ContextVar[tuple[int, ...]] = ContextVar("revision", default=())
# Rows per page of every long list (the Queue Viewer's page weight stays small).
PAGE_SIZE = 50


LIVE: web.AppKey[LabHandle] = web.AppKey("web-lab")


class Sessions:
    """Session id → CSRF token, in memory only (a restarted lab forgets every login)."""

    def __init__(self) -> None:
        self._csrf: OrderedDict[str, str] = OrderedDict()

    def open(self) -> tuple[str, str]:
        sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self._csrf[sid] = csrf
        while len(self._csrf) > MAX_SESSIONS:
            self._csrf.popitem(last=False)
        return sid, csrf

    def csrf(self, sid: str | None) -> str | None:
        return None if sid is None else self._csrf.get(sid)

    def close(self, sid: str | None) -> None:
        if sid is not None:
            self._csrf.pop(sid, None)


SESSIONS: web.AppKey[Sessions] = web.AppKey("web-sessions")


def csrf_token(request: web.Request) -> str | None:
    """The CSRF token of the request's session; None when not logged in."""
    return request.app[SESSIONS].csrf(request.cookies.get(COOKIE))


def live(request: web.Request) -> LabHandle:
    return request.app[LIVE]


def page(request: web.Request, template: str, context: Mapping[str, Any],
         status: int = 200) -> web.Response:
    """``template`` rendered with ``context`` (autoescaped) as the answer."""
    shared = {"nav": NAV, "path": request.path, "here": request.path_qs,
              "since": ".".join(str(n) for n in REVISION.get()),
              "csrf": csrf_token(request),
              "csrf_field": CSRF_FIELD, "lab": live(request)}
    return aiohttp_jinja2.render_template(template, request, {**shared, **context},
                                          status=status)


async def form(request: web.Request) -> dict[str, str]:
    """The text fields of a submitted form (files are not taken; the last of a name wins)."""
    fields = await request.post()
    return {name: value for name, value in fields.items() if isinstance(value, str)}


def field(fields: Mapping[str, str], name: str, default: str | None = None) -> str:
    """A text field, stripped; Invalid when a required one is missing."""
    value = fields.get(name, default)
    if value is None:
        raise Invalid(f"{name} is required")
    return value.strip()


def whole(text: str, limit: Range) -> int:
    """A whole number of ``limit``'s range written in a form or query string."""
    try:
        return int(limit.parse(text.strip()))
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def done(location: str) -> web.HTTPSeeOther:
    """The answer to a successful action: back to a page (Post/Redirect/Get)."""
    return web.HTTPSeeOther(location)


def local_path(target: str, default: str = "/") -> str:
    """Only a path of this lab to go back to (no open redirect)."""
    return target if target.startswith("/") and not target.startswith(("//", "/\\")) else default


def simtime(value: float | None) -> str:
    """Epoch seconds as people read them (UTC), or an em dash."""
    if value is None or not math.isfinite(value):
        return "—"
    try:
        moment = datetime.datetime.fromtimestamp(value, datetime.UTC)
    except (OverflowError, OSError, ValueError):
        return str(value)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class Pager:
    """One page of ``rows`` (``number`` from 1) and the links around it."""

    rows: Sequence[Any]
    number: int
    pages: int
    total: int

    @classmethod
    def of(cls, rows: Sequence[Any], number: int, size: int = PAGE_SIZE) -> Pager:
        pages = max(1, -(-len(rows) // size))
        number = min(max(1, number), pages)
        start = (number - 1) * size
        return cls(rows[start:start + size], number, pages, len(rows))


PAGE_NUMBER = Range("page", 1, 10_000_000)


def page_number(request: web.Request) -> int:
    return whole(request.query.get("page", "1"), PAGE_NUMBER)
