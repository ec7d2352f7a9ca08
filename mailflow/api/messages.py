"""Messages: ``GET /api/v1/messages`` (message tracking's search), one message's trace
(``.../{id}``) and its bytes (``.../{id}/raw``).

In: the requests (``search``, ``sender``, ``recipient``, ``subject`` and paging for the
search). Out: JSON from ``mailflow.queue_views`` and ``mailflow.views``, or the message
as ``message/rfc822``.
"""

from __future__ import annotations

from aiohttp import web

from mailflow import queue_views, views
from mailflow.api.handle import V1, json_response, lab, read
from mailflow.api.request import page

routes = web.RouteTableDef()


@routes.get(f"{V1}/messages")
async def message_search(request: web.Request) -> web.Response:
    running, query = lab(request), request.query
    limit, offset = page(request)
    rows = await running.store.read(lambda c: queue_views.search_messages(
        c, limit, offset, text=query.get("search"), sender=query.get("sender"),
        recipient=query.get("recipient"), subject=query.get("subject")))
    return json_response(rows)


@routes.get(f"{V1}/messages/{{id}}")
async def message_show(request: web.Request) -> web.Response:
    return await read(request, views.message, request.match_info["id"])


@routes.get(f"{V1}/messages/{{id}}/raw")
async def message_raw(request: web.Request) -> web.Response:
    raw = await lab(request).store.read(
        lambda c: views.raw_message(c, request.match_info["id"])
    )
    return web.Response(body=raw, content_type="message/rfc822")
