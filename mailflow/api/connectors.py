"""The organization's wiring: connectors, RPC reachability and services.

In: ``GET``/``POST /api/v1/connectors``, ``DELETE /api/v1/connectors/{id}``,
``POST /api/v1/rpc`` and ``POST /api/v1/services/{server}/{service}/start|stop``.
Out: JSON from ``mailflow.actions.organization``, each change one store write;
after a service starts or stops the lab settles, so what it made due has happened.
"""

from __future__ import annotations

from aiohttp import web

from mailflow import limits
from mailflow.actions import organization as operations
from mailflow.api.handle import V1, json_response, lab, read
from mailflow.api.request import body, number, text
from mailflow.errors import Invalid

routes = web.RouteTableDef()


@routes.get(f"{V1}/connectors")
async def connector_list(request: web.Request) -> web.Response:
    return await read(request, operations.list_connectors)


@routes.post(f"{V1}/connectors")
async def connector_add(request: web.Request) -> web.Response:
    running, doc = lab(request), await body(request)
    cost = int(number(doc, "cost", limits.CONNECTOR_COST, default=1))
    kind, a, b = text(doc, "type"), text(doc, "site_a"), text(doc, "site_b")
    name = text(doc, "name", "")
    added = await running.store.write(
        lambda tx: operations.add_connector(tx, running.scenario, kind, a, b, cost, name)
    )
    return json_response(added, status=201)


@routes.delete(f"{V1}/connectors/{{id}}")
async def connector_remove(request: web.Request) -> web.Response:
    try:
        connector_id = int(limits.CONNECTOR_ID.parse(request.match_info["id"]))
    except ValueError as exc:  # not the id of any connector there can be
        raise web.HTTPNotFound() from exc
    await lab(request).store.write(lambda tx: operations.remove_connector(tx, connector_id))
    return json_response({"removed": connector_id})


@routes.post(f"{V1}/rpc")
async def rpc_set(request: web.Request) -> web.Response:
    running, doc = lab(request), await body(request)
    a, b, allowed = text(doc, "a"), text(doc, "b"), doc.get("allowed")
    if not isinstance(allowed, bool):
        raise Invalid("allowed must be true or false")
    result = await running.store.write(
        lambda tx: operations.set_rpc(tx, running.scenario, a, b, allowed))
    return json_response(result)


@routes.post(f"{V1}/services/{{server}}/{{service}}/{{action:start|stop}}")
async def service_action(request: web.Request) -> web.Response:
    running, info = lab(request), request.match_info
    run = info["action"] == "start"
    doc = await running.store.write(
        lambda tx: operations.set_service(tx, running.scenario, info["server"], info["service"],
                                          run)
    )
    await running.settle()
    return json_response(doc)
