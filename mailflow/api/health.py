"""Liveness and metrics: ``GET /healthz`` and ``GET /metrics``.

In: a probe or a Prometheus scrape. Out: ``{"status": "ok"}``, or the lab's
registry in OpenMetrics (to a scraper that asks for it) or the classic text format.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from mailflow.api.handle import json_response, lab

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    loop = asyncio.get_running_loop()
    # Prometheus asks for OpenMetrics first; curl and browsers get the classic text format.
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    body = await loop.run_in_executor(None, encode, lab(request).registry)
    return web.Response(body=body, headers={"Content-Type": content_type})
