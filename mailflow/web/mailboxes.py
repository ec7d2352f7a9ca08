"""Mailboxes and messages: the directory's view of a mailbox, its items, a message's trail.

In: ``GET /mailboxes`` (``page``), ``/mailboxes/{address}`` (``page``),
``/messages/{id}`` (a queue id or Message-ID) and ``/messages/{id}/raw``. Out:
pages from ``mailflow.views``: the mailbox's directory attributes and stores,
its messages, the trail of a message as a timeline (accepted, refused, deferred,
released, relayed, delivered...) with simulated and real times, and the raw
message shown as text (never as HTML).
"""

from __future__ import annotations

from aiohttp import web

from mailflow import views
from mailflow.web.common import PAGE_SIZE, live, page, page_number

routes = web.RouteTableDef()


@routes.get("/mailboxes")
async def mailbox_list(request: web.Request) -> web.Response:
    number = page_number(request)
    rows = await live(request).store.read(
        lambda db: views.mailboxes(db, PAGE_SIZE + 1, (number - 1) * PAGE_SIZE))
    return page(request, "mailboxes.html", {"title": "Mailboxes", "rows": rows[:PAGE_SIZE],
                                            "number": number, "more": len(rows) > PAGE_SIZE})


@routes.get("/mailboxes/{address}")
async def mailbox_show(request: web.Request) -> web.Response:
    address, number = request.match_info["address"], page_number(request)
    store = live(request).store
    box = await store.read(lambda db: views.mailbox(db, address))
    items = await store.read(lambda db: views.mailbox_messages(
        db, address, PAGE_SIZE + 1, (number - 1) * PAGE_SIZE))
    return page(request, "mailbox.html", {
        "title": f"Mailbox {box['address']}", "box": box, "items": items[:PAGE_SIZE],
        "number": number, "more": len(items) > PAGE_SIZE})


@routes.get("/messages/{id}")
async def message_show(request: web.Request) -> web.Response:
    ident = request.match_info["id"]
    doc = await live(request).store.read(lambda db: views.message(db, ident))
    return page(request, "message.html", {"title": f"Message {doc['id']}", "m": doc})


@routes.get("/messages/{id}/raw")
async def message_raw(request: web.Request) -> web.Response:
    ident = request.match_info["id"]
    raw = await live(request).store.read(lambda db: views.raw_message(db, ident))
    return page(request, "raw.html", {"title": f"Raw message {ident}", "ident": ident,
                                      "text": raw.decode("utf-8", errors="replace")})
