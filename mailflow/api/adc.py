"""The Active Directory Connector: its status, and runs, stop and start by hand.

In: ``GET /api/v1/adc``, ``POST /api/v1/adc/run`` (``{"agreement": NAME}`` or
none for every agreement), ``POST /api/v1/adc/stop`` and ``/start``. Out: the
ADC's status as JSON (``mailflow.actions.directory``); each change is one
store write, after which the lab settles so that what it made due has happened.
"""

from __future__ import annotations

from aiohttp import web

from mailflow.actions import directory as operations
from mailflow.api.handle import V1, json_response, lab, read
from mailflow.api.request import body, optional_text

routes = web.RouteTableDef()


@routes.get(f"{V1}/adc")
async def adc_status(request: web.Request) -> web.Response:
    return await read(request, operations.status, lab(request).scenario)


@routes.post(f"{V1}/adc/run")
async def adc_run(request: web.Request) -> web.Response:
    running, doc = lab(request), await body(request)
    name = optional_text(doc, "agreement")
    result = await running.store.write(lambda tx: operations.run(tx, running.scenario, name))
    await running.settle()
    return json_response(result)


@routes.post(f"{V1}/adc/{{action:stop|start}}")
async def adc_service(request: web.Request) -> web.Response:
    running = lab(request)
    action = operations.start if request.match_info["action"] == "start" else operations.stop
    result = await running.store.write(lambda tx: action(tx, running.scenario))
    await running.settle()
    return json_response(result)
