"""The consistency audit: ``GET /api/v1/audit``.

In: the request. Out: ``stores.audit``'s report of the store as JSON.
"""

from __future__ import annotations

from aiohttp import web

from mailflow.api.handle import V1, json_response, lab
from stores.audit import audit

routes = web.RouteTableDef()


@routes.get(f"{V1}/audit")
async def audit_report(request: web.Request) -> web.Response:
    servers = {s.name for s in lab(request).scenario.servers}
    report = await lab(request).store.read(lambda c: audit(c, servers))
    return json_response(report.as_dict())
