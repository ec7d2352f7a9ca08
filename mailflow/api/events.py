"""The event log: ``GET /api/v1/events`` (paged, and ``after`` an event id).

In: the request. Out: JSON events from ``mailflow.views``.
"""

from __future__ import annotations

from aiohttp import web

from mailflow import limits, views
from mailflow.api.handle import V1, read
from mailflow.api.request import page, query_number

routes = web.RouteTableDef()


@routes.get(f"{V1}/events")
async def event_list(request: web.Request) -> web.Response:
    after = query_number(request, "after", "0", limits.EVENT_AFTER)
    return await read(request, views.events, *page(request), after)
