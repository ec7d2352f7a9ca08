"""Mailboxes: ``GET /api/v1/mailboxes``, one mailbox, and the messages in it.

In: the requests (paged with ``limit`` and ``offset``). Out: JSON from ``mailflow.views``.
"""

from __future__ import annotations

from aiohttp import web

from mailflow import views
from mailflow.api.handle import V1, lab, read
from mailflow.api.request import page

routes = web.RouteTableDef()


@routes.get(f"{V1}/mailboxes")
async def mailbox_list(request: web.Request) -> web.Response:
    return await read(request, views.mailboxes, *page(request))


@routes.get(f"{V1}/mailboxes/{{address}}")
async def mailbox_show(request: web.Request) -> web.Response:
    return await read(request, views.mailbox_trail, lab(request).scenario,
                      request.match_info["address"])


@routes.get(f"{V1}/mailboxes/{{address}}/messages")
async def mailbox_messages(request: web.Request) -> web.Response:
    return await read(request, views.mailbox_messages, request.match_info["address"],
                      *page(request))
