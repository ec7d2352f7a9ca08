"""Databases (DAG, issue 19): each database, its copies with their queues and health, and
the operator's actions on them.

In: ``GET /databases``; ``POST /databases/{db}/copies/{server}/lag`` (the form's
``copy_queue_length`` and optional ``replay_queue_length``), ``.../copies/{server}/
suspend|resume``, ``POST /databases/{db}/failover`` (``server``) and
``/databases/{db}/dismount|mount``. Out: pages from ``mailflow.actions.databases`` (what
the API's ``/api/v1/databases`` calls), so the page refuses what the API refuses, with its
message; after an action the lab settles and the browser goes back to ``/databases``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from mailflow import limits
from mailflow.actions import databases as operations
from mailflow.web.common import done, field, form, live, page, whole
from stores.backend import Tx
from stores.topology import Scenario

routes = web.RouteTableDef()
COPY = "/databases/{db}/copies/{server}"


async def _change(request: web.Request, change: Callable[[Tx, Scenario], Any]) -> None:
    running = live(request)
    await running.store.write(lambda tx: change(tx, running.scenario))
    await running.settle()


@routes.get("/databases")
async def database_list(request: web.Request) -> web.Response:
    running = live(request)
    rows = await running.store.read(operations.list_databases)
    return page(request, "databases.html", {"title": "Databases (DAG)", "databases": rows,
                                            "now": running.clock.now()})


@routes.post(f"{COPY}/lag")
async def copy_lag(request: web.Request) -> web.Response:
    fields, info = await form(request), request.match_info
    copy_queue = whole(field(fields, "copy_queue_length"), limits.COPY_QUEUE)
    replay_text = field(fields, "replay_queue_length", "")
    replay = whole(replay_text, limits.REPLAY_QUEUE) if replay_text else None
    await _change(request, lambda tx, s: operations.lag(
        tx, s, info["db"], info["server"], copy_queue, replay))
    raise done("/databases")


@routes.post(f"{COPY}/{{action:suspend|resume}}")
async def copy_suspend(request: web.Request) -> web.Response:
    info = request.match_info
    await _change(request, lambda tx, s: operations.set_suspended(
        tx, s, info["db"], info["server"], info["action"] == "suspend"))
    raise done("/databases")


@routes.post("/databases/{db}/failover")
async def database_failover(request: web.Request) -> web.Response:
    name, server = request.match_info["db"], field(await form(request), "server")
    await _change(request, lambda tx, s: operations.failover(tx, s, name, server))
    raise done("/databases")


@routes.post("/databases/{db}/{action:dismount|mount}")
async def database_mount(request: web.Request) -> web.Response:
    info = request.match_info
    await _change(request, lambda tx, s: operations.set_mounted(
        tx, s, info["db"], info["action"] == "mount"))
    raise done("/databases")
