"""The lab clock: ``GET /clock`` (simulated time and speed), ``POST /clock/advance``.

In: the request; the form's ``seconds`` (``mailflow.limits.ADVANCE_SECONDS``). Out:
the page; advancing runs every piece of work that falls due on the way (the
lab's own ``advance``, as the API's route does), then back to the page.
"""

from __future__ import annotations

from aiohttp import web

from mailflow import limits
from mailflow.errors import Invalid
from mailflow.web.common import done, field, form, live, page

routes = web.RouteTableDef()


@routes.get("/clock")
async def clock_show(request: web.Request) -> web.Response:
    clock = live(request).clock
    return page(request, "clock.html", {"title": "Clock", "now": clock.now(),
                                        "speed": clock.speed})


@routes.post("/clock/advance")
async def clock_advance(request: web.Request) -> web.Response:
    running = live(request)
    try:
        seconds = limits.ADVANCE_SECONDS.parse(field(await form(request), "seconds"))
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    if running.clock.now() + seconds > limits.MAX_SIM_TIME:
        raise Invalid("the clock cannot go past the year 9999")
    await running.advance(seconds)
    raise done("/clock")
