"""DAG databases and their copies (issue 19): ``/api/v1/databases``.

In: ``GET /api/v1/databases`` and ``/api/v1/databases/{db}``; ``POST`` (token needed)
``/api/v1/databases/{db}/copies/{server}/lag`` (``copy_queue_length``, optional
``replay_queue_length``), ``.../copies/{server}/suspend|resume``,
``/api/v1/databases/{db}/failover`` (``server``) and ``/api/v1/databases/{db}/dismount|mount``.
Out: JSON from ``mailflow.actions.databases`` (each change one store write; JSON 4xx for
unknown names or bad values, nothing half-changed); after a change the lab settles, so what
it made due (a stalled move's check, mail waiting for the database) has happened.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from mailflow import limits
from mailflow.actions import databases as operations
from mailflow.api.handle import V1, json_response, lab, read
from mailflow.api.request import body, count, number, text
from stores.backend import Tx
from stores.topology import Scenario

routes = web.RouteTableDef()
Change = Callable[[Tx, Scenario], dict[str, Any]]


async def _change(request: web.Request, change: Change) -> web.Response:
    running = lab(request)
    doc = await running.store.write(lambda tx: change(tx, running.scenario))
    await running.settle()
    return json_response(doc)


@routes.get(f"{V1}/databases")
async def database_list(request: web.Request) -> web.Response:
    return await read(request, operations.list_databases)


@routes.get(f"{V1}/databases/{{db}}")
async def database_show(request: web.Request) -> web.Response:
    return await read(request, operations.show, request.match_info["db"])


@routes.post(f"{V1}/databases/{{db}}/copies/{{server}}/lag")
async def copy_lag(request: web.Request) -> web.Response:
    doc, info = await body(request), request.match_info
    copy_queue = int(number(doc, "copy_queue_length", limits.COPY_QUEUE))
    replay = count(doc, "replay_queue_length", limits.REPLAY_QUEUE)
    return await _change(request, lambda tx, s: operations.lag(
        tx, s, info["db"], info["server"], copy_queue, replay))


@routes.post(f"{V1}/databases/{{db}}/copies/{{server}}/{{action:suspend|resume}}")
async def copy_suspend(request: web.Request) -> web.Response:
    info = request.match_info
    return await _change(request, lambda tx, s: operations.set_suspended(
        tx, s, info["db"], info["server"], info["action"] == "suspend"))


@routes.post(f"{V1}/databases/{{db}}/failover")
async def database_failover(request: web.Request) -> web.Response:
    doc, name = await body(request), request.match_info["db"]
    server = text(doc, "server")
    return await _change(request, lambda tx, s: operations.failover(tx, s, name, server))


@routes.post(f"{V1}/databases/{{db}}/{{action:dismount|mount}}")
async def database_mount(request: web.Request) -> web.Response:
    info = request.match_info
    return await _change(request, lambda tx, s: operations.set_mounted(
        tx, s, info["db"], info["action"] == "mount"))
