"""A mailbox database's System Mailbox: ``GET /api/v1/databases/{db}/system-mailbox``.

In: the database name (``<SERVER>-DB01`` of a 2007/2010 server). Out: its folders
"MailboxReplicationService Move Jobs", "... Move Reports" and "... SyncStates", a message
per MRS move request to that database (``mailflow.moves.trail``); 404 for an unknown one.
"""

from __future__ import annotations

from aiohttp import web

from mailflow.api.handle import V1, lab, read
from mailflow.moves import trail

routes = web.RouteTableDef()


@routes.get(f"{V1}/databases/{{db}}/system-mailbox")
async def system_mailbox(request: web.Request) -> web.Response:
    return await read(request, trail.system_mailbox, lab(request).scenario,
                      request.match_info["db"])
