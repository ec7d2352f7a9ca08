"""Fault rules: ``POST|GET|DELETE /api/v1/faults`` and ``DELETE /api/v1/faults/{id}``.

In: a rule as JSON (checked by ``mailflow.smtp.faultrules``: a 400 naming the key when it
is wrong), or a rule's id. Out: the rule with its id, ``remaining`` and ``injected``; the
list of rules; what was removed. Every call but GET needs the bearer token (the
middleware). docs/faults.md describes the rules.
"""

from __future__ import annotations

from aiohttp import web

from mailflow.api.handle import V1, json_response, lab
from mailflow.api.request import body
from mailflow.errors import Invalid, NotFound
from mailflow.smtp import faultrules

routes = web.RouteTableDef()


@routes.post(f"{V1}/faults")
async def fault_add(request: web.Request) -> web.Response:
    running = lab(request)
    doc = await body(request)
    try:
        rule = faultrules.rule(doc, tuple(s.name for s in running.scenario.servers))
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    return json_response(await running.faults.add(rule), status=201)


@routes.get(f"{V1}/faults")
async def fault_list(request: web.Request) -> web.Response:
    return json_response(await lab(request).faults.listing())


@routes.delete(f"{V1}/faults")
async def fault_clear(request: web.Request) -> web.Response:
    return json_response({"removed": await lab(request).faults.clear()})


@routes.delete(f"{V1}/faults/{{id}}")
async def fault_remove(request: web.Request) -> web.Response:
    raw = request.match_info["id"]
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
        raise NotFound(f"no fault rule {raw!r}")
    if not await lab(request).faults.remove(int(raw)):
        raise NotFound(f"no fault rule {raw}")
    return json_response({"removed": 1})
