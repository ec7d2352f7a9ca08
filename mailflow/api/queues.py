"""The HTTP routes of queues: requests in, Queue Viewer's answers out.

In: ``GET``/``POST``/``DELETE`` requests under ``/api/v1`` (queues, their messages
and actions, Disable Outbound Mail, qshape). Out: JSON from
``mailflow.queue_views`` and ``mailflow.actions.queues``; errors are the API's JSON
errors (``mailflow.api.middleware``). Every action is one store write; the
lab then settles, so what the action made due has happened when it answers.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from mailflow import queue_views
from mailflow.actions import queues as queue_ops
from mailflow.api.handle import V1, json_response, lab
from mailflow.api.request import page, query_flag, query_seconds
from mailflow.errors import Invalid
from routing import hub_views, queues
from stores import listing
from stores.backend import Read

routes = web.RouteTableDef()
QUEUE = f"{V1}/queues/{{server}}/{{queue}}"


@routes.get(f"{V1}/queues")
async def queue_list(request: web.Request) -> web.Response:
    running = lab(request)
    limit, offset = page(request)
    rows = await running.store.read(
        lambda c: queues.list_queues(c, running.scenario, running.clock.now()))
    return json_response(rows[offset:offset + limit])


@routes.get(f"{QUEUE}/messages")
async def queue_messages(request: web.Request) -> web.Response:
    running, info, query = lab(request), request.match_info, request.query
    limit, offset = page(request)
    older = query_seconds(query.get("older_than"), "older_than")
    state = query.get("state")
    if state is not None and state not in listing.STATES:
        raise Invalid(f"state must be one of {', '.join(listing.STATES)}")

    def messages(c: Read) -> list[dict[str, Any]]:
        # An unknown server or queue is a 404, as retry|freeze|thaw answer.
        server, queue = queue_ops.checked_queue(c, running.scenario, info["server"],
                                                info["queue"])
        rows = queue_views.queue_messages(
            c, server, queue, running.clock.now(), limit, offset,
            sender=query.get("sender"), recipient=query.get("recipient"), older_than=older,
            state=state)
        return hub_views.hub_messages(c, running.scenario, server, queue, rows)

    return json_response(await running.store.read(messages))


async def _act(request: web.Request, action: Any, *args: Any) -> web.Response:
    running = lab(request)
    doc = await running.store.write(lambda tx: action(tx, running.scenario, *args))
    await running.settle()
    return json_response(doc)


@routes.post(f"{QUEUE}/{{action:retry|freeze|thaw|suspend|resume}}")
async def queue_action(request: web.Request) -> web.Response:
    info = request.match_info
    word = queue_ops.action_word(lab(request).scenario, info["server"], info["action"])
    action = {"retry": queue_ops.retry_queue, "freeze": queue_ops.freeze_queue,
              "thaw": queue_ops.thaw_queue}[word]
    return await _act(request, action, info["server"], info["queue"])


@routes.post(f"{QUEUE}/messages/{{id}}/{{action:freeze|thaw|suspend|resume}}")
async def message_action(request: web.Request) -> web.Response:
    info = request.match_info
    word = queue_ops.action_word(lab(request).scenario, info["server"], info["action"])
    return await _act(request, queue_ops.set_message_frozen, info["server"], info["queue"],
                      info["id"], word == "freeze")


@routes.delete(f"{QUEUE}/messages")
async def queue_delete_all(request: web.Request) -> web.Response:
    """Delete all messages (with NDR / no NDR), as Queue Viewer's queue menu offers."""
    info = request.match_info
    ndr = query_flag(request.query.get("ndr"), "ndr", False)
    return await _act(request, queue_ops.delete_all_messages, info["server"], info["queue"], ndr)


@routes.delete(f"{QUEUE}/messages/{{id}}")
async def message_delete(request: web.Request) -> web.Response:
    info = request.match_info
    ndr = query_flag(request.query.get("ndr"), "ndr", False)
    return await _act(request, queue_ops.delete_message, info["server"], info["queue"],
                      info["id"], ndr)


@routes.post(f"{V1}/servers/{{server}}/{{action:disable-outbound|enable-outbound}}")
async def outbound(request: web.Request) -> web.Response:
    info = request.match_info
    return await _act(request, queue_ops.set_outbound, info["server"],
                      info["action"] == "enable-outbound")


@routes.get(f"{V1}/qshape")
async def qshape(request: web.Request) -> web.Response:
    running, query = lab(request), request.query
    doc = await running.store.read(lambda c: queue_views.qshape(
        c, running.scenario, running.clock.now(), server=query.get("server"),
        queue=query.get("queue"), by=query.get("by", "recipient-domain")))
    return json_response(doc)
