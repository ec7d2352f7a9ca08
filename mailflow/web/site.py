"""The web interface installed on the lab's aiohttp application.

In: the API's application (``mailflow.api.app.build_app``) and the running lab.
Out: the application also serving the pages at ``/`` (one module per page group),
``/static`` (vendored htmx and its SSE extension, the stylesheet), ``/live``
(Server-Sent Events) and the login; ``MIDDLEWARES`` (the guard of
``mailflow.web.session``) for the API to put after its own.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from mailflow.api.handle import LabHandle
from mailflow.web import (
    clock,
    common,
    databases,
    directory,
    events,
    live,
    mailboxes,
    moves,
    organization,
    queues,
    session,
)
from mailflow.web.common import LIVE

MIDDLEWARES = (session.guard,)
PAGES = (organization, queues, moves, mailboxes, events, clock, directory, databases, session,
         live)
STATIC = Path(__file__).parent / "static"



def install(app: web.Application, lab: LabHandle) -> None:
    """Add the web interface to ``app``."""
    app[LIVE] = lab
    app[common.SESSIONS] = common.Sessions()
    app[live.STREAMS] = set()
    app.on_shutdown.append(live.close_streams)
    env = aiohttp_jinja2.setup(
        app, loader=jinja2.PackageLoader("mailflow.web"), autoescape=True,
        undefined=jinja2.StrictUndefined)
    env.filters["simtime"] = common.simtime
    app.router.add_static("/static", STATIC)
    for module in PAGES:
        app.add_routes(module.routes)
