"""Directory replicas (ADC, issue 17): the connection agreements and a mailbox's directory
object side by side in AD and every site's 5.5 directory.

In: ``GET /adc``, ``POST /adc/run`` (the form's ``agreement``, empty for every one),
``POST /adc/stop|start``, ``GET /directory/{address}`` (and ``GET /directory``
with the form's ``address``, which goes there). Out: pages from
``mailflow.actions.directory`` (what the API's ``/api/v1/adc`` and ``/api/v1/directory``
call): each agreement's schedule, last and next run and pending changes; the object in
each replica, an attribute a row and a replica a column. After an action the lab
settles and the browser goes back to ``/adc``. An organization without a 5.5 server
has no ADC: the page says so.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web

from mailflow.actions import directory as operations
from mailflow.web.common import done, field, form, live, page

routes = web.RouteTableDef()
# The fields every replica's row has, shown in this order before its other attributes.
FIRST = ("state", "legacy_exchange_dn", "server", "proxy_addresses", "member_of", "kind",
         "owner", "version", "edited")


@routes.get("/adc")
async def adc_show(request: web.Request) -> web.Response:
    running = live(request)
    status = (await running.store.read(lambda db: operations.status(db, running.scenario))
              if running.scenario.mixed else None)
    return page(request, "adc.html", {"title": "Directory replicas (ADC)", "adc": status,
                                      "now": running.clock.now()})


@routes.post("/adc/run")
async def adc_run(request: web.Request) -> web.Response:
    running = live(request)
    name = field(await form(request), "agreement", "") or None
    await running.store.write(lambda tx: operations.run(tx, running.scenario, name))
    await running.settle()
    raise done("/adc")


@routes.post("/adc/{action:stop|start}")
async def adc_service(request: web.Request) -> web.Response:
    running = live(request)
    action = operations.start if request.match_info["action"] == "start" else operations.stop
    await running.store.write(lambda tx: action(tx, running.scenario))
    await running.settle()
    raise done("/adc")


def _rows(replicas: list[dict[str, Any]]) -> list[tuple[str, list[Any]]]:
    """(attribute, its value in each replica) for every attribute any replica has."""
    names = [n for n in FIRST if any(n in r for r in replicas)]
    names += sorted({n for r in replicas for n in r} - set(names) - {"replica", "attributes"})
    extra = sorted({n for r in replicas for n in r.get("attributes", {})})
    rows = [(n, [r.get(n) for r in replicas]) for n in names]
    return rows + [(n, [r.get("attributes", {}).get(n) for r in replicas]) for n in extra]


@routes.get("/directory")
async def directory_find(request: web.Request) -> web.Response:
    address = field(request.query, "address")
    raise done(f"/directory/{quote(address, safe='@')}")


@routes.get("/directory/{address}")
async def directory_show(request: web.Request) -> web.Response:
    running = live(request)
    doc = await running.store.read(lambda db: operations.show(
        db, running.scenario, request.match_info["address"]))
    return page(request, "directory.html", {
        "title": f"Directory object {doc['address']}", "address": doc["address"],
        "replicas": [r["replica"] for r in doc["replicas"]], "rows": _rows(doc["replicas"])})
