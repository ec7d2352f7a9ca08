"""The HTTP routes of queues and message tracking: requests in, Queue Viewer's answers out.

In: ``GET``/``POST``/``DELETE`` requests under ``/api/v1`` (queues, their messages
and actions, Disable Outbound Mail, qshape, message search). Out: JSON from
``mailflow.queue_views`` and ``mailflow.actions.queues``; errors are the API's JSON
errors (``mailflow.api`` middlewares). Every action is one store write; the
lab then settles, so what the action made due has happened when it answers.
"""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web

from mailflow import queue_views
from mailflow.actions import queues as queue_ops
from mailflow.api.app import _lab, _page
from mailflow.errors import Invalid
from routing import queues


def _flag(value: str | None, name: str, default: bool) -> bool:
    if value is None:
        return default
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise Invalid(f"{name} must be true or false")


def _seconds(value: str | None, name: str) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError as exc:
        raise Invalid(f"{name} must be a number of seconds") from exc
    if not math.isfinite(seconds) or seconds < 0:
        raise Invalid(f"{name} must be a number of seconds >= 0")
    return seconds


async def queue_list(request: web.Request) -> web.Response:
    lab = _lab(request)
    limit, offset = _page(request)
    rows = await lab.store.read(lambda c: queues.list_queues(c, lab.scenario, lab.clock.now()))
    return web.json_response(rows[offset:offset + limit])


async def queue_messages(request: web.Request) -> web.Response:
    lab, info, query = _lab(request), request.match_info, request.query
    limit, offset = _page(request)
    older = _seconds(query.get("older_than"), "older_than")
    rows = await lab.store.read(lambda c: queue_views.queue_messages(
        c, lab.scenario, info["server"], info["queue"], lab.clock.now(), limit, offset,
        sender=query.get("sender"), recipient=query.get("recipient"), older_than=older))
    return web.json_response(rows)


async def _act(request: web.Request, action: Any, *args: Any) -> web.Response:
    lab = _lab(request)
    doc = await lab.store.write(lambda tx: action(tx, lab.scenario, *args))
    await lab.settle()
    return web.json_response(doc)


async def queue_action(request: web.Request) -> web.Response:
    info = request.match_info
    action = {"retry": queue_ops.retry_queue, "freeze": queue_ops.freeze_queue,
              "thaw": queue_ops.thaw_queue}[info["action"]]
    return await _act(request, action, info["server"], info["queue"])


async def message_action(request: web.Request) -> web.Response:
    info = request.match_info
    return await _act(request, queue_ops.set_message_frozen, info["server"], info["queue"],
                      info["id"], info["action"] == "freeze")


async def message_delete(request: web.Request) -> web.Response:
    info = request.match_info
    ndr = _flag(request.query.get("ndr"), "ndr", False)
    return await _act(request, queue_ops.delete_message, info["server"], info["queue"],
                      info["id"], ndr)


async def outbound(request: web.Request) -> web.Response:
    info = request.match_info
    return await _act(request, queue_ops.set_outbound, info["server"],
                      info["action"] == "enable-outbound")


async def qshape(request: web.Request) -> web.Response:
    lab, query = _lab(request), request.query
    doc = await lab.store.read(lambda c: queue_views.qshape(
        c, lab.scenario, lab.clock.now(), server=query.get("server"), queue=query.get("queue"),
        by=query.get("by", "recipient-domain")))
    return web.json_response(doc)


async def message_search(request: web.Request) -> web.Response:
    lab, query = _lab(request), request.query
    limit, offset = _page(request)
    rows = await lab.store.read(lambda c: queue_views.search_messages(
        c, limit, offset, text=query.get("search"), sender=query.get("sender"),
        recipient=query.get("recipient"), subject=query.get("subject")))
    return web.json_response(rows)


def add_routes(app: web.Application, v1: str) -> None:
    """Register every route of this module under the API prefix ``v1``."""
    queue = f"{v1}/queues/{{server}}/{{queue}}"
    app.router.add_get(f"{v1}/queues", queue_list)
    app.router.add_get(f"{queue}/messages", queue_messages)
    app.router.add_post(f"{queue}/{{action:retry|freeze|thaw}}", queue_action)
    app.router.add_post(f"{queue}/messages/{{id}}/{{action:freeze|thaw}}", message_action)
    app.router.add_delete(f"{queue}/messages/{{id}}", message_delete)
    app.router.add_post(f"{v1}/servers/{{server}}/{{action:disable-outbound|enable-outbound}}",
                        outbound)
    app.router.add_get(f"{v1}/qshape", qshape)
    app.router.add_get(f"{v1}/messages", message_search)
