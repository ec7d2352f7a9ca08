"""The organization page (``/``): sites, servers, connectors, the RPC matrix, services.

In: ``GET /`` and the actions ``POST /connectors``, ``/connectors/{id}/remove``,
``/rpc`` and ``/services/{server}/{service}/start|stop`` (forms with the CSRF
token, checked by ``mailflow.web.session``). Out: the page (each server's version,
SMTP endpoint and service states; each pair's RPC reachability as routing sees it),
or the change made by ``mailflow.actions.organization`` (what the API calls) and
a redirect back.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from mailflow import limits, views
from mailflow.actions import organization as operations
from mailflow.errors import Invalid
from mailflow.web.common import done, field, form, live, page, whole
from routing.connectors import rpc_possible
from stores import services
from stores.backend import Read
from stores.topology import CONNECTOR_LABELS, CONNECTOR_TYPES

routes = web.RouteTableDef()


def _organization(db: Read, request: web.Request) -> dict[str, Any]:
    running = live(request)
    scenario = running.scenario
    doc = views.topology(db, scenario)
    addresses = running.endpoint_addresses()
    for server in doc["servers"]:
        name = server["name"]
        server["services"] = {s: services.running(db, name, s) for s in services.SERVICES}
        server["endpoint"] = ("{}:{}".format(*addresses[name]) if name in addresses else "—")
    doc["matrix"] = [[(a.name == b.name) or rpc_possible(db, a, b) for b in scenario.servers]
                     for a in scenario.servers]
    return doc


@routes.get("/")
async def organization(request: web.Request) -> web.Response:
    doc = await live(request).store.read(lambda db: _organization(db, request))
    return page(request, "organization.html", {
        "title": "Organization", "org": doc, "types": CONNECTOR_TYPES,
        "labels": CONNECTOR_LABELS, "services": services.SERVICES})


@routes.post("/connectors")
async def connector_add(request: web.Request) -> web.Response:
    running, fields = live(request), await form(request)
    cost = whole(field(fields, "cost", "1") or "1", limits.CONNECTOR_COST)
    kind, a, b = field(fields, "type"), field(fields, "site_a"), field(fields, "site_b")
    name = field(fields, "name", "")
    await running.store.write(
        lambda tx: operations.add_connector(tx, running.scenario, kind, a, b, cost, name))
    raise done("/#connectors")


@routes.post("/connectors/{id}/remove")
async def connector_remove(request: web.Request) -> web.Response:
    connector_id = whole(request.match_info["id"], limits.CONNECTOR_ID)
    await live(request).store.write(lambda tx: operations.remove_connector(tx, connector_id))
    raise done("/#connectors")


@routes.post("/rpc")
async def rpc_set(request: web.Request) -> web.Response:
    running, fields = live(request), await form(request)
    a, b, allowed = field(fields, "a"), field(fields, "b"), field(fields, "allowed")
    if allowed not in ("true", "false"):
        raise Invalid("allowed must be true or false")
    await running.store.write(
        lambda tx: operations.set_rpc(tx, running.scenario, a, b, allowed == "true"))
    raise done("/#rpc")


@routes.post("/services/{server}/{service}/{action:start|stop}")
async def service_action(request: web.Request) -> web.Response:
    running, info = live(request), request.match_info
    await running.store.write(lambda tx: operations.set_service(
        tx, running.scenario, info["server"], info["service"], info["action"] == "start"))
    await running.settle()
    raise done("/#servers")
