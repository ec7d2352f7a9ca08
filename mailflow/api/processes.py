"""The lab's processes: ``GET /api/v1/processes``.

In: the request. Out: one object per live process of the lab (its API, host, pid, the
servers it runs, whether it leads the organization's work, its last heartbeat in real
time and the simulated time by which it has done its due work): this process alone, but
in a lab spread over several on PostgreSQL (docs/scale-out.md).
"""

from __future__ import annotations

from aiohttp import web

from mailflow.api.handle import V1, json_response, lab

routes = web.RouteTableDef()


@routes.get(f"{V1}/processes")
async def processes(request: web.Request) -> web.Response:
    return json_response(await lab(request).processes())
