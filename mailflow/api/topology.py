"""The organization and the lab's state: ``GET /api/v1/topology`` and ``/api/v1/status``.

In: the requests. Out: JSON read models from ``mailflow.views``; the status adds
the address of each SMTP endpoint and of the API.
"""

from __future__ import annotations

from aiohttp import web

from mailflow import views
from mailflow.api.handle import V1, json_response, lab, read

routes = web.RouteTableDef()


@routes.get(f"{V1}/status")
async def status(request: web.Request) -> web.Response:
    running = lab(request)
    doc = await running.store.read(
        lambda c: views.status(c, running.scenario, running.clock.now()))
    doc["endpoints"] = running.endpoint_addresses()
    doc["api"] = running.http_url
    return json_response(doc)


@routes.get(f"{V1}/topology")
async def topology(request: web.Request) -> web.Response:
    return await read(request, views.topology, lab(request).scenario)
