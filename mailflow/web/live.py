"""Server-Sent Events: ``GET /live`` tells the open pages that the store committed.

In: a page's EventSource (the vendored htmx SSE extension). Out: one ``change``
event (data: the store's generation) after every committed write batch, as
``mailflow.runtime.changes`` wakes us (no polling loop); a comment line as a
keep-alive when nothing happened for ``KEEPALIVE`` seconds. Each live region of a
page asks for its fragment again on ``sse:change``. The lab's shutdown ends
every open stream at once.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from mailflow.web.common import live
from mailflow.web.session import SECURITY_HEADERS

KEEPALIVE = 15.0
STREAMS: web.AppKey[set[asyncio.Task[object]]] = web.AppKey("web-streams")

routes = web.RouteTableDef()


@routes.get("/live")
async def stream(request: web.Request) -> web.StreamResponse:
    answer = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                         "Cache-Control": "no-store", **SECURITY_HEADERS})
    await answer.prepare(request)
    changes = live(request).changes
    seen = changes.generation
    task = asyncio.current_task()
    assert task is not None
    request.app[STREAMS].add(task)
    try:
        await answer.write(b"retry: 2000\n\n")
        while True:
            now = await changes.wait(seen, KEEPALIVE)
            chunk = f"event: change\ndata: {now}\n\n" if now != seen else ": idle\n\n"
            seen = now
            await answer.write(chunk.encode())
    except (ConnectionResetError, asyncio.CancelledError):
        return answer
    finally:
        request.app[STREAMS].discard(task)


async def close_streams(app: web.Application) -> None:
    """On the lab's shutdown: end every open stream (else the runner waits for them)."""
    streams: set[asyncio.Task[object]] = app[STREAMS]
    for task in tuple(streams):
        task.cancel()
