"""Server-Sent Events: ``GET /live`` tells the open pages that the store committed.

In: a page's EventSource (the vendored htmx SSE extension). Out: a ``change``
event (data: the store's generation) after a committed write batch that changed what
a page shows (``stores.revision``: the scheduler commits every tick, mostly nothing),
as ``mailflow.runtime.changes`` wakes us (no polling loop), at most one per ``GAP``
seconds, and one on connecting when the page (``since``: the revision it was read at) is
already behind; a comment line as a keep-alive when nothing happened
for ``KEEPALIVE`` seconds. Each live region of a page asks for its fragment again on
``sse:change``. The lab's shutdown ends every open stream at once.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from mailflow.web.common import live
from mailflow.web.session import SECURITY_HEADERS
from stores.revision import revision

KEEPALIVE = 15.0
# Busy mail flow commits many times a second; a page redraws at most this often.
GAP = 0.5
STREAMS: web.AppKey[set[asyncio.Task[object]]] = web.AppKey("web-streams")

routes = web.RouteTableDef()


@routes.get("/live")
async def stream(request: web.Request) -> web.StreamResponse:
    answer = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                         "Cache-Control": "no-store", **SECURITY_HEADERS})
    await answer.prepare(request)
    running = live(request)
    changes = running.changes
    seen = changes.generation
    shown = await running.store.read(revision)
    rendered = request.query.get("since", "")
    task = asyncio.current_task()
    assert task is not None
    request.app[STREAMS].add(task)
    try:
        await answer.write(b"retry: 2000\n\n")
        if rendered != ".".join(str(n) for n in shown):
            # What committed between the page's reads and this connection shows now.
            await answer.write(f"event: change\ndata: {seen}\n\n".encode())
        while True:
            now = await changes.wait(seen, KEEPALIVE)
            if changes.closed:  # the lab is stopping: wait() no longer waits
                return answer
            if now == seen:
                await answer.write(b": idle\n\n")
                continue
            seen, current = now, await running.store.read(revision)
            if current != shown:
                shown = current
                await answer.write(f"event: change\ndata: {now}\n\n".encode())
                await asyncio.sleep(GAP)
    except (ConnectionResetError, asyncio.CancelledError):
        return answer
    finally:
        request.app[STREAMS].discard(task)


async def close_streams(app: web.Application) -> None:
    """On the lab's shutdown: end every open stream (else the runner waits for them)."""
    streams: set[asyncio.Task[object]] = app[STREAMS]
    for task in tuple(streams):
        task.cancel()
