"""The lab clock: ``GET /api/v1/clock`` and ``POST /api/v1/clock/advance``.

In: the requests (``{"seconds": n}`` to advance). Out: the simulated time and
speed; advancing runs every piece of work that falls due on the way.
"""

from __future__ import annotations

from aiohttp import web

from mailflow import limits
from mailflow.api.handle import V1, json_response, lab
from mailflow.api.request import body, number
from mailflow.errors import Invalid

routes = web.RouteTableDef()


@routes.get(f"{V1}/clock")
async def clock_show(request: web.Request) -> web.Response:
    running = lab(request)
    return json_response({"now": running.clock.now(), "speed": running.clock.speed})


@routes.post(f"{V1}/clock/advance")
async def clock_advance(request: web.Request) -> web.Response:
    doc = await body(request)
    seconds = number(doc, "seconds", limits.ADVANCE_SECONDS)
    if lab(request).clock.now() + seconds > limits.MAX_SIM_TIME:
        raise Invalid("the clock cannot go past the year 9999")
    now = await lab(request).advance(float(seconds))
    return json_response({"now": now, "speed": lab(request).clock.speed})
