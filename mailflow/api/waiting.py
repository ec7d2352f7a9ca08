"""Waiting without sleeping: ``GET /api/v1/messages/wait`` holds the request until the mail
asked for is there.

In: the query ``mailbox`` (a recipient address, exactly; any recipient when absent),
``from`` and ``subject`` (case-insensitive substrings), ``count`` (how many messages,
1..``MAX_COUNT``, default 1), ``state`` (``delivered``, the default: delivered into the
mailbox; ``queued``: accepted by the lab, wherever it is now) and ``timeout`` (real
seconds, 0..``MAX_TIMEOUT``, default ``DEFAULT_TIMEOUT``). Out: the matching messages (as
``GET /api/v1/messages`` lists them, at most ``MAX_COUNT``) as soon as there are ``count``
of them, a JSON 408 once the timeout has passed, or a 503 when the lab stops meanwhile
(``Changes.close``: a stopping lab does not wait for its waiters). Nothing polls: the
request looks again only when a write has been committed (``Lab.changes``). This module
is registered before ``/messages/{id}``, which would otherwise take ``wait`` for a queue
id.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from mailflow import queue_views
from mailflow.api.handle import V1, json_response, lab
from mailflow.api.middleware import error
from mailflow.errors import Invalid
from mailflow.limits import Range

DEFAULT_TIMEOUT = 30.0
MAX_TIMEOUT = 300.0
MAX_COUNT = 1000
STATES = ("delivered", "queued")
TIMEOUT = Range("timeout", 0, MAX_TIMEOUT, whole=False)
COUNT = Range("count", 1, MAX_COUNT)

routes = web.RouteTableDef()


def wanted(row: dict[str, Any], mailbox: str | None, state: str) -> bool:
    """Whether a message of the search is one waited for: addressed to ``mailbox`` (or to
    anyone) and, for ``delivered``, delivered to it."""
    return any((mailbox is None or pair["rcpt"].lower() == mailbox)
               and (state == "queued" or pair["state"] == "delivered")
               for pair in row["recipients"])


def _parse(query: Any, key: str, limit: Range, default: str) -> float:
    try:
        return limit.parse(query.get(key, default))
    except ValueError as exc:
        raise Invalid(str(exc)) from None


@routes.get(f"{V1}/messages/wait")
async def message_wait(request: web.Request) -> web.Response:
    running, query = lab(request), request.query
    mailbox = query["mailbox"].strip().lower() if query.get("mailbox") else None
    state = query.get("state", "delivered")
    if state not in STATES:
        raise Invalid(f"state must be one of {', '.join(STATES)}")
    count = int(_parse(query, "count", COUNT, "1"))
    timeout = _parse(query, "timeout", TIMEOUT, str(DEFAULT_TIMEOUT))

    def find(conn: Any) -> list[dict[str, Any]]:
        rows = queue_views.search_messages(conn, MAX_COUNT, 0, sender=query.get("from"),
                                           recipient=mailbox, subject=query.get("subject"))
        return [row for row in rows if wanted(row, mailbox, state)]

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        seen = running.changes.generation  # before the read: a later commit wakes us
        found = await running.store.read(find)
        if len(found) >= count:
            return json_response(found)
        left = deadline - loop.time()
        if running.changes.closed:
            return error(503, "the lab is stopping", f"{len(found)} of {count} found")
        if left <= 0:
            return error(408, "timed out waiting for messages",
                         f"{len(found)} of {count} after {timeout:g}s")
        await running.changes.wait(seen, left)
