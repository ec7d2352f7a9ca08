"""The Queue Viewer: every queue of every server, one queue's messages, and their actions.

In: ``GET /queues`` (``sort``, ``dir``, ``page`` of the Queue Viewer's table,
``hub_page`` of Get-Queue's), ``GET /queues/{server}/{queue}``
(``sender``, ``recipient``, ``page``: Find Messages), ``GET /find`` (message
tracking's search) and the actions ``POST /queues/{server}/{queue}/retry|freeze|thaw``,
``.../delete-all`` (``ndr``: Delete all messages),
``.../messages/{id}/freeze|thaw|delete`` (``ndr``), ``POST /servers/{server}/
disable-outbound|enable-outbound``. Out: pages with the columns of
each server's version (a table of Exchange 5.5/2000/2003's Queue Viewer; one of
``Get-Queue`` on 2007 and 2010, fields and the suspend/resume names from
``routing.hub_views``), live as the store commits; actions through
``mailflow.actions.queues`` (what the API calls), then the lab settles and the browser goes back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from mailflow import queue_views
from mailflow.actions import queues as queue_ops
from mailflow.errors import Invalid
from mailflow.web.common import (
    PAGE_NUMBER,
    PAGE_SIZE,
    Pager,
    done,
    field,
    form,
    live,
    local_path,
    page,
    page_number,
    whole,
)
from routing import hub_views, queues
from stores import queue_state
from stores.backend import Read, Tx

routes = web.RouteTableDef()
QUEUE = "/queues/{server}/{queue}"

# The columns of Exchange 5.5/2000/2003's Queue Viewer: (key of the row, heading).
VIEWER = (
    ("server", "Server"),
    ("display_name", "Queue"),
    ("message_count", "Number of messages"),
    ("status", "State"),
    ("next_retry_time", "Next retry time"),
    ("oldest_message_age_seconds", "Oldest message (s)"),
    ("last_error", "Last error"),
)
# Get-Queue's on 2007/2010 (the fields of ``routing.hub_views.get_queue``).
GET_QUEUE = (
    ("identity", "Identity"),
    ("delivery_type", "DeliveryType"),
    ("next_hop_domain", "NextHopDomain"),
    ("status", "Status"),
    ("message_count", "MessageCount"),
    ("last_error", "LastError"),
    ("retry_count", "RetryCount"),
    ("next_retry_time", "NextRetryTime"),
)
SORTS = frozenset(key for key, _ in VIEWER + GET_QUEUE)


@dataclass(frozen=True)
class Family:
    """One table of the page: the queues of the servers of one family of versions."""

    id: str
    title: str
    columns: tuple[tuple[str, str], ...]
    page_field: str
    hub: bool
    pager: Pager


def _sort(rows: list[dict[str, Any]], key: str, descending: bool) -> list[dict[str, Any]]:
    if key not in SORTS:
        raise Invalid(f"sort must be one of {', '.join(sorted(SORTS))}")
    return sorted(rows, key=lambda r: (r.get(key) is None, r.get(key) if r.get(key) is not None
                                       else 0, r["server"], r["queue"]), reverse=descending)


def _families(request: web.Request, rows: list[dict[str, Any]]) -> list[Family]:
    """The Queue Viewer's table (5.5/2000/2003) and Get-Queue's (2007/2010), each paged by
    its own field; a family without a server in the scenario has no table."""
    scenario, query = live(request).scenario, request.query
    found = []
    for hub, columns, name, title in (
            (False, VIEWER, "page", "Queue Viewer (Exchange 5.5, 2000 and 2003)"),
            (True, GET_QUEUE, "hub_page", "Get-Queue (Exchange 2007 and 2010)")):
        if any(s.version.hub_transport == hub for s in scenario.servers):
            mine = [r for r in rows if r["hub"] == hub]
            number = whole(query.get(name, "1"), PAGE_NUMBER)
            found.append(Family("hub" if hub else "viewer", title, columns, name, hub,
                                Pager.of(mine, number)))
    return found


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
    families = _families(request, _sort(rows, key, order == "desc"))
    return page(request, "queues.html", {
        "title": "Queue Viewer", "families": families, "sort": key, "dir": order,
        "pages": {f.page_field: f.pager.number for f in families},
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


@routes.post(f"{QUEUE}/{{action:retry|freeze|thaw|suspend|resume}}")
async def queue_action(request: web.Request) -> web.Response:
    info = request.match_info
    name = hub_views.ACTIONS.get(info["action"], info["action"])
    action = {"retry": queue_ops.retry_queue, "freeze": queue_ops.freeze_queue,
              "thaw": queue_ops.thaw_queue}[name]
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


async def _ndr(request: web.Request) -> bool:
    ndr = field(await form(request), "ndr", "false")
    if ndr not in ("true", "false"):
        raise Invalid("ndr must be true or false")
    return ndr == "true"


@routes.post(f"{QUEUE}/messages/{{id}}/delete")
async def message_delete(request: web.Request) -> web.Response:
    info = request.match_info
    await _act(request, queue_ops.delete_message, info["server"], info["queue"], info["id"],
               await _ndr(request))
    raise await _back(request)


@routes.post(f"{QUEUE}/delete-all")
async def queue_delete_all(request: web.Request) -> web.Response:
    """Queue Viewer's "Delete all messages (with NDR / no NDR)"; 404 for an empty queue."""
    info = request.match_info
    await _act(request, queue_ops.delete_all_messages, info["server"], info["queue"],
               await _ndr(request))
    raise await _back(request)
