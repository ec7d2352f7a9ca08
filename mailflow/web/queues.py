"""The Queue Viewer: every queue of every server, one queue's messages, and their actions.

In: ``GET /queues`` (``sort``, ``dir``, ``page``), ``GET /queues/{server}/{queue}``
(``sender``, ``recipient``, ``page``: Find Messages), ``GET /find`` (message
tracking's search) and the actions ``POST /queues/{server}/{queue}/retry|freeze|thaw``,
``.../messages/{id}/freeze|thaw|delete`` (``ndr``), ``POST /servers/{server}/
disable-outbound|enable-outbound``. Out: pages with the columns of
each server's version (Exchange 2003's Queue Viewer; ``Get-Queue`` on 2007 and
2010), live as the store commits; actions through ``mailflow.actions.queues``
(what the API calls), then the lab settles and the browser goes back.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from mailflow import queue_views
from mailflow.actions import queues as queue_ops
from mailflow.errors import Invalid
from mailflow.web.common import (
    PAGE_SIZE,
    Pager,
    done,
    field,
    form,
    live,
    local_path,
    page,
    page_number,
)
from routing import queues
from stores import queue_state
from stores.backend import Read, Tx

routes = web.RouteTableDef()
QUEUE = "/queues/{server}/{queue}"

# (key, Queue Viewer's heading on 5.5/2000/2003, Get-Queue's on 2007/2010)
COLUMNS = (
    ("server", "Server", "Server"),
    ("display_name", "Queue", "Identity"),
    ("message_count", "Number of messages", "MessageCount"),
    ("status", "State", "Status"),
    ("next_retry_time", "Next retry time", "NextRetryTime"),
    ("oldest_message_age_seconds", "Oldest message (s)", "OldestMessageAge (s)"),
    ("last_error", "Last error", "LastError"),
)
SORTS = frozenset(key for key, _, _ in COLUMNS)


def _sort(rows: list[dict[str, Any]], key: str, descending: bool) -> list[dict[str, Any]]:
    if key not in SORTS:
        raise Invalid(f"sort must be one of {', '.join(sorted(SORTS))}")
    return sorted(rows, key=lambda r: (r[key] is None, r[key] if r[key] is not None else 0),
                  reverse=descending)


@routes.get("/queues")
async def queue_list(request: web.Request) -> web.Response:
    running, query = live(request), request.query
    key, order = query.get("sort", "server"), query.get("dir", "asc")
    if order not in ("asc", "desc"):
        raise Invalid("dir must be asc or desc")
    rows, off = await running.store.read(lambda db: (
        queues.list_queues(db, running.scenario, running.clock.now()),
        queue_state.outbound_disabled_servers(db)))
    for row in rows:
        row["hub"] = running.scenario.server(row["server"]).version.hub_transport
        row["label"] = row["identity"] if row["hub"] else row["display_name"]
    pager = Pager.of(_sort(rows, key, order == "desc"), page_number(request))
    hub_only = all(r["hub"] for r in rows)
    return page(request, "queues.html", {
        "title": "Queue Viewer", "pager": pager, "sort": key, "dir": order,
        "columns": [(k, gq if hub_only else qv) for k, qv, gq in COLUMNS],
        "now": running.clock.now(), "total": sum(r["message_count"] for r in rows),
        "servers": [(s.name, s.name in off) for s in running.scenario.servers]})


def _messages(db: Read, request: web.Request, number: int) -> dict[str, Any]:
    running, query, info = live(request), request.query, request.match_info
    server, queue = queue_ops.checked_queue(db, running.scenario, info["server"], info["queue"])
    now = running.clock.now()
    sender, rcpt = query.get("sender") or None, query.get("recipient") or None
    rows = queue_views.queue_messages(db, server, queue, now, PAGE_SIZE + 1,
                                      (number - 1) * PAGE_SIZE, sender=sender, recipient=rcpt)
    row = next((r for r in queues.list_queues(db, running.scenario, now)
                if r["server"] == server and r["queue"] == queue), None)
    return {"server": server, "queue": queue, "rows": rows[:PAGE_SIZE], "queue_row": row,
            "more": len(rows) > PAGE_SIZE, "sender": sender or "", "recipient": rcpt or "",
            "hub": running.scenario.server(server).version.hub_transport}


@routes.get(QUEUE)
async def queue_show(request: web.Request) -> web.Response:
    number = page_number(request)
    doc = await live(request).store.read(lambda db: _messages(db, request, number))
    return page(request, "queue.html", {"title": f"Queue {doc['queue']} on {doc['server']}",
                                        "q": doc, "number": number})


@routes.get("/find")
async def find(request: web.Request) -> web.Response:
    text = request.query.get("search", "").strip()
    number = page_number(request)
    rows = await live(request).store.read(lambda db: queue_views.search_messages(
        db, PAGE_SIZE + 1, (number - 1) * PAGE_SIZE, text=text)) if text else []
    return page(request, "find.html", {"title": "Find messages", "search": text,
                                       "rows": rows[:PAGE_SIZE], "number": number,
                                       "more": len(rows) > PAGE_SIZE})


async def _act(request: web.Request, action: Any, *args: Any) -> None:
    running = live(request)

    def change(tx: Tx) -> object:
        return action(tx, running.scenario, *args)

    await running.store.write(change)
    await running.settle()


async def _back(request: web.Request) -> web.HTTPSeeOther:
    """Back to the page the form was on (its ``back`` field), else the queue's page."""
    info = request.match_info
    queue = f"/queues/{info['server']}/{info['queue']}"
    return done(local_path((await form(request)).get("back", queue), queue))


@routes.post(f"{QUEUE}/{{action:retry|freeze|thaw}}")
async def queue_action(request: web.Request) -> web.Response:
    info = request.match_info
    action = {"retry": queue_ops.retry_queue, "freeze": queue_ops.freeze_queue,
              "thaw": queue_ops.thaw_queue}[info["action"]]
    await _act(request, action, info["server"], info["queue"])
    raise await _back(request)


@routes.post(f"{QUEUE}/messages/{{id}}/{{action:freeze|thaw}}")
async def message_action(request: web.Request) -> web.Response:
    info = request.match_info
    await _act(request, queue_ops.set_message_frozen, info["server"], info["queue"],
               info["id"], info["action"] == "freeze")
    raise await _back(request)


@routes.post("/servers/{server}/{action:disable-outbound|enable-outbound}")
async def outbound(request: web.Request) -> web.Response:
    info = request.match_info
    await _act(request, queue_ops.set_outbound, info["server"],
               info["action"] == "enable-outbound")
    raise done("/queues")


@routes.post(f"{QUEUE}/messages/{{id}}/delete")
async def message_delete(request: web.Request) -> web.Response:
    info, fields = request.match_info, await form(request)
    ndr = field(fields, "ndr", "false")
    if ndr not in ("true", "false"):
        raise Invalid("ndr must be true or false")
    await _act(request, queue_ops.delete_message, info["server"], info["queue"], info["id"],
               ndr == "true")
    raise await _back(request)
