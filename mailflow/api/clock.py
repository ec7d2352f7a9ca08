"""The lab clock: ``GET /api/v1/clock`` and ``POST /api/v1/clock/advance``.

In: the requests (``{"seconds": n}`` to advance). Out: the simulated time and
speed; advancing runs every piece of work that falls due on the way.
"""

from __future__ import annotations

from aiohttp import web

from mailflow.api.handle import V1, lab
from mailflow.api.request import body, is_number
from mailflow.errors import Invalid

routes = web.RouteTableDef()


@routes.get(f"{V1}/clock")
async def clock_show(request: web.Request) -> web.Response:
    running = lab(request)
    return web.json_response({"now": running.clock.now(), "speed": running.clock.speed})


@routes.post(f"{V1}/clock/advance")
async def clock_advance(request: web.Request) -> web.Response:
    doc = await body(request)
    seconds = doc.get("seconds")
    if not is_number(seconds) or seconds < 0:
        raise Invalid("seconds must be a number >= 0")
    now = await lab(request).advance(float(seconds))
    return web.json_response({"now": now, "speed": lab(request).clock.speed})
