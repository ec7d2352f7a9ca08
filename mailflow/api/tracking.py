"""The message tracking log: ``GET /api/v1/tracking`` in Get-MessageTrackingLog's fields.

In: the query string (``message``, ``sender``, ``recipient``, ``server``, ``event_id``,
``start`` and ``end`` in simulated epoch seconds, ``limit``, ``format`` json or csv).
Out: the rows of ``stores.tracking.log``, as a JSON array or as CSV with Exchange's
column names (list fields joined by ``;``, as Export-Csv writes them).
"""

from __future__ import annotations

from aiohttp import web

from mailflow import limits
from mailflow.api.handle import V1, json_response, lab
from mailflow.api.request import query_number, query_seconds
from mailflow.errors import Invalid
from stores import tracking

routes = web.RouteTableDef()


def _filter(request: web.Request) -> tracking.Filter:
    query = request.query
    event = query.get("event_id")
    if event is not None and event.upper() not in tracking.EVENT_IDS:
        raise Invalid(f"event_id must be one of {', '.join(tracking.EVENT_IDS)}")
    return tracking.Filter(
        message=query.get("message"), sender=query.get("sender"),
        recipient=query.get("recipient"), server=query.get("server"), event_id=event,
        start=query_seconds(query.get("start"), "start"),
        end=query_seconds(query.get("end"), "end"),
        limit=query_number(request, "limit", "1000", limits.PAGE_LIMIT))


@routes.get(f"{V1}/tracking")
async def tracking_log(request: web.Request) -> web.Response:
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "csv"):
        raise Invalid("format must be json or csv")
    query = _filter(request)
    running = lab(request)
    domain = running.scenario.domains[0]
    rows = await running.store.read(lambda conn: tracking.log(conn, query, domain))
    if fmt == "csv":
        return web.Response(text=tracking.csv_text(rows), content_type="text/csv")
    return json_response(rows)
