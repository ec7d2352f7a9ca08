"""The event log: ``GET /api/v1/events`` (paged, and ``after`` an event id).

In: the request. Out: JSON events from ``mailflow.views``.
"""

from __future__ import annotations

from aiohttp import web

from mailflow import views
from mailflow.api.handle import V1, read
from mailflow.api.request import page
from mailflow.errors import Invalid

routes = web.RouteTableDef()


@routes.get(f"{V1}/events")
async def event_list(request: web.Request) -> web.Response:
    try:
        after = int(request.query.get("after", "0"))
    except ValueError as exc:
        raise Invalid("after must be an event id") from exc
    return await read(request, views.events, *page(request), after)
