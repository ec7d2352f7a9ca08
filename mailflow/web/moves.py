"""Moves: the list with status and progress, the form that starts one, each move's page.

In: ``GET /moves`` (``page``), ``POST /moves`` (the form: mailbox, target, engine,
hold, start after, bad items, online (engine default, online or offline: nothing is sent
by default, so the version rules choose), suspend-when-ready, suspend with a comment,
fail point, batch, move host),
``GET /moves/{id}`` and ``.../report``, ``POST /moves/{id}/complete|fail|suspend|
resume|remove``. Out: pages from ``mailflow.views``; the form's fields become the
API's request body and pass the API's own checks (``mailflow.api.moves.move_request``)
and the engine's (``mailflow.moves.dispatch``), so the page refuses what the API
refuses, with its message.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from mailflow import limits, views
from mailflow.api.moves import move_request
from mailflow.errors import Invalid
from mailflow.moves import dispatch as moves
from mailflow.moves.common import ENGINES
from mailflow.moves.states import FINAL
from mailflow.moves.wizard2003 import FAIL_POINTS
from mailflow.web.common import PAGE_SIZE, done, field, form, live, page, page_number, whole
from stores.backend import Tx

routes = web.RouteTableDef()
ACTIONS = {"complete": moves.complete, "fail": moves.fail, "suspend": moves.suspend,
           "resume": moves.resume}
FLAGS = ("hold", "suspend_when_ready", "suspend")
TEXTS = ("engine", "fail_at", "batch", "move_host", "suspend_comment")
# The form's "mode" → the API's ``online`` (absent: the engine's default for the versions).
MODES = {"": None, "online": True, "offline": False}


def _body(fields: dict[str, str], now: float) -> dict[str, Any]:
    """The form as the JSON body of ``POST /api/v1/moves`` (unchecked boxes are false)."""
    doc: dict[str, Any] = {"mailbox": field(fields, "mailbox"), "target": field(fields, "target")}
    doc.update({name: fields.get(name) == "on" for name in FLAGS})
    doc.update({name: field(fields, name, "") or None for name in TEXTS})
    mode = field(fields, "mode", "")
    if mode not in MODES:
        raise Invalid("mode must be online, offline or empty (the engine's default)")
    if MODES[mode] is not None:
        doc["online"] = MODES[mode]
    if count := field(fields, "bad_items", ""):
        doc["bad_items"] = whole(count, limits.BAD_ITEMS)
    if limit := field(fields, "bad_item_limit", ""):
        doc["bad_item_limit"] = whole(limit, limits.BAD_ITEM_LIMIT)
    if after := field(fields, "start_after", ""):
        try:
            doc["at"] = now + limits.ADVANCE_SECONDS.parse(after)
        except ValueError as exc:
            raise Invalid(f"start after: {exc}") from None
    return doc


@routes.get("/moves")
async def move_list(request: web.Request) -> web.Response:
    running, number = live(request), page_number(request)
    rows = await running.store.read(lambda db: views.move_list(
        db, running.clock.now(), PAGE_SIZE + 1, (number - 1) * PAGE_SIZE))
    boxes = await running.store.read(lambda db: views.mailboxes(db, 1000, 0))
    return page(request, "moves.html", {
        "title": "Moves", "moves": rows[:PAGE_SIZE], "more": len(rows) > PAGE_SIZE,
        "number": number, "mailboxes": boxes, "servers": running.scenario.servers,
        "engines": ENGINES, "fail_points": FAIL_POINTS})


@routes.post("/moves")
async def move_start(request: web.Request) -> web.Response:
    running = live(request)
    doc = _body(await form(request), running.clock.now())
    wanted = move_request({k: v for k, v in doc.items() if k not in ("mailbox", "target")})

    def start(tx: Tx) -> str:
        return moves.start(tx, running.scenario, doc["mailbox"], doc["target"], wanted)

    move_id = await running.store.write(start)
    raise done(f"/moves/{move_id}")


@routes.get("/moves/{id}")
async def move_show(request: web.Request) -> web.Response:
    running, move_id = live(request), request.match_info["id"]
    move = await running.store.read(lambda db: views.move(db, move_id, running.clock.now()))
    return page(request, "move.html", {"title": f"Move {move['id']} of {move['mailbox']}",
                                       "move": move, "final": move["status"] in FINAL})


@routes.get("/moves/{id}/report")
async def move_report(request: web.Request) -> web.Response:
    move_id = request.match_info["id"]
    report = await live(request).store.read(lambda db: views.move_report(db, move_id))
    return web.Response(body=report, content_type="application/xml")


@routes.post("/moves/{id}/{action:complete|fail|suspend|resume}")
async def move_action(request: web.Request) -> web.Response:
    running, info = live(request), request.match_info
    action = ACTIONS[info["action"]]
    await running.store.write(lambda tx: action(tx, running.scenario, info["id"]))
    await running.settle()
    raise done(f"/moves/{info['id']}")


@routes.post("/moves/{id}/remove")
async def move_remove(request: web.Request) -> web.Response:
    running, move_id = live(request), request.match_info["id"]
    await running.store.write(lambda tx: moves.remove(tx, running.scenario, move_id))
    await running.settle()
    raise done("/moves")
