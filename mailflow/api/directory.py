"""The mixed-mode directory: objects side by side in every replica, edits, and groups.

In: ``GET /api/v1/directory/{address}``, ``POST /api/v1/directory/{address}/edit``
(``{"replica": SITE, "set": {ATTRIBUTE: VALUE}}``), ``GET /api/v1/groups`` and
``GET /api/v1/groups/{address}``. Out: JSON from ``mailflow.actions.directory``;
an edit is one store write.
"""

from __future__ import annotations

from aiohttp import web

from mailflow.actions import directory as operations
from mailflow.api.handle import V1, json_response, lab, read
from mailflow.api.request import body, text
from mailflow.errors import Invalid

routes = web.RouteTableDef()
MAX_VALUE = 1024


@routes.get(f"{V1}/directory/{{address}}")
async def directory_show(request: web.Request) -> web.Response:
    running = lab(request)
    return await read(request, operations.show, running.scenario, request.match_info["address"])


@routes.post(f"{V1}/directory/{{address}}/edit")
async def directory_edit(request: web.Request) -> web.Response:
    running, doc = lab(request), await body(request)
    replica, changes = text(doc, "replica"), doc.get("set")
    if not isinstance(changes, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and len(k) + len(v) <= MAX_VALUE
            for k, v in changes.items()):
        raise Invalid(f"set must be an object of strings (at most {MAX_VALUE} characters)")
    address = request.match_info["address"]
    result = await running.store.write(
        lambda tx: operations.edit(tx, running.scenario, address, replica, changes))
    return json_response(result)


@routes.get(f"{V1}/groups")
async def group_list(request: web.Request) -> web.Response:
    return await read(request, operations.groups)


@routes.get(f"{V1}/groups/{{address}}")
async def group_show(request: web.Request) -> web.Response:
    running = lab(request)
    return await read(request, operations.group, running.scenario, request.match_info["address"])
