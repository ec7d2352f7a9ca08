"""The event log, live: ``GET /events`` (``page``; newest first).

In: the request. Out: the emulated Application log (``mailflow.views.events``),
refreshed as the store commits.
"""

from __future__ import annotations

from aiohttp import web

from mailflow import views
from mailflow.web.common import PAGE_SIZE, live, page, page_number
from stores.backend import Read

routes = web.RouteTableDef()


def _newest(db: Read, number: int) -> tuple[list[dict[str, object]], bool]:
    """A page of events, newest first (the read model pages oldest first from ``after``)."""
    everything = views.events(db, 1_000_000_000, 0, 0)
    start = (number - 1) * PAGE_SIZE
    newest = everything[::-1]
    return newest[start:start + PAGE_SIZE], len(newest) > start + PAGE_SIZE


@routes.get("/events")
async def event_list(request: web.Request) -> web.Response:
    number = page_number(request)
    rows, more = await live(request).store.read(lambda db: _newest(db, number))
    return page(request, "events.html", {"title": "Events", "rows": rows, "number": number,
                                         "more": more})
