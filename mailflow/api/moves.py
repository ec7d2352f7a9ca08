"""Mailbox moves: ``/api/v1/moves``, one move, its actions and its XML report.

In: ``POST`` a move request (every field checked), ``GET`` the moves or one,
``POST .../complete|fail|suspend|resume``, ``DELETE`` one, ``GET .../report``.
Out: the move as JSON from ``mailflow.views`` (201 when created), or Exchange's
XML move report. Each change is one store write through ``mailflow.moves``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from mailflow import limits, views
from mailflow.api.handle import V1, json_response, lab, read
from mailflow.api.request import body, count, flag, optional_text, page, text, time_field
from mailflow.errors import Invalid
from mailflow.moves import dispatch as moves

routes = web.RouteTableDef()

FIELDS = frozenset({"mailbox", "target", "hold", "at", "engine", "online", "bad_items",
                    "bad_item_limit", "suspend_when_ready", "fail_at", "batch", "move_host",
                    "suspend", "suspend_comment"})


def move_request(doc: dict[str, Any]) -> moves.MoveRequest:
    """The body of POST /api/v1/moves as a request; every field is checked."""
    if unknown := sorted(set(doc) - FIELDS):
        raise Invalid(f"unknown field(s): {', '.join(unknown)}")
    return moves.MoveRequest(
        hold=flag(doc, "hold", False),
        at=time_field(doc, "at"),
        engine=optional_text(doc, "engine"),
        online=None if doc.get("online") is None else flag(doc, "online", True),
        bad_items=count(doc, "bad_items", limits.BAD_ITEMS) or 0,
        bad_item_limit=count(doc, "bad_item_limit", limits.BAD_ITEM_LIMIT),
        suspend_when_ready=flag(doc, "suspend_when_ready", False),
        fail_at=optional_text(doc, "fail_at"),
        batch=optional_text(doc, "batch"),
        move_host=optional_text(doc, "move_host"),
        suspend=flag(doc, "suspend", False),
        suspend_comment=optional_text(doc, "suspend_comment"),
    )


@routes.post(f"{V1}/moves")
async def move_create(request: web.Request) -> web.Response:
    running = lab(request)
    doc = await body(request)
    address, target = text(doc, "mailbox"), text(doc, "target")
    wanted = move_request(doc)
    move_id = await running.store.write(
        lambda tx: moves.start(tx, running.scenario, address, target, wanted)
    )
    move = await running.store.read(lambda c: views.move(c, move_id, running.clock.now()))
    return json_response(move, status=201)


@routes.get(f"{V1}/moves")
async def move_list(request: web.Request) -> web.Response:
    return await read(request, views.move_list, lab(request).clock.now(), *page(request))


@routes.get(f"{V1}/moves/{{id}}")
async def move_show(request: web.Request) -> web.Response:
    return await read(request, views.move, request.match_info["id"], lab(request).clock.now())


def _move_action(
    action: Callable[..., None],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The handler of POST /api/v1/moves/{id}/<action>: the action, then the move."""

    async def handler(request: web.Request) -> web.Response:
        running = lab(request)
        move_id = request.match_info["id"]
        await running.store.write(lambda tx: action(tx, running.scenario, move_id))
        doc = await running.store.read(lambda c: views.move(c, move_id, running.clock.now()))
        return json_response(doc)

    return handler


routes.post(f"{V1}/moves/{{id}}/complete")(_move_action(moves.complete))
routes.post(f"{V1}/moves/{{id}}/fail")(_move_action(moves.fail))
routes.post(f"{V1}/moves/{{id}}/suspend")(_move_action(moves.suspend))
routes.post(f"{V1}/moves/{{id}}/resume")(_move_action(moves.resume))


@routes.delete(f"{V1}/moves/{{id}}")
async def move_remove(request: web.Request) -> web.Response:
    running, move_id = lab(request), request.match_info["id"]
    await running.store.write(lambda tx: moves.remove(tx, running.scenario, move_id))
    return json_response({"removed": move_id})


@routes.get(f"{V1}/moves/{{id}}/report")
async def move_report(request: web.Request) -> web.Response:
    report = await lab(request).store.read(
        lambda c: views.move_report(c, request.match_info["id"])
    )
    return web.Response(body=report, content_type="application/xml")
