"""One message: ``GET /api/v1/messages/{id}`` (its trace) and ``.../raw`` (its bytes).

In: the requests. Out: JSON from ``mailflow.views``, or the message as
``message/rfc822``. Searching messages is ``mailflow.api.queues``'s.
"""

from __future__ import annotations

from aiohttp import web

from mailflow import views
from mailflow.api.handle import V1, lab, read

routes = web.RouteTableDef()


@routes.get(f"{V1}/messages/{{id}}")
async def message_show(request: web.Request) -> web.Response:
    return await read(request, views.message, request.match_info["id"])


@routes.get(f"{V1}/messages/{{id}}/raw")
async def message_raw(request: web.Request) -> web.Response:
    raw = await lab(request).store.read(
        lambda c: views.raw_message(c, request.match_info["id"])
    )
    return web.Response(body=raw, content_type="message/rfc822")
