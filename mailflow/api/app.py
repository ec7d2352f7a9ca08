"""The HTTP API (aiohttp): JSON requests in, reads of the store and lab actions out.

Reads are open. Every request that changes state needs ``Authorization:
Bearer <token>`` (the token in ``<data>/api-token``). Every error is JSON
``{"error": ..., "detail": ...}`` with a 4xx status; nothing leaks a traceback.
Also serves ``/metrics`` for Prometheus (OpenMetrics to a scraper that asks for it, the
classic text format otherwise) and ``/healthz``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeGuard

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from mailflow import moves, views
from mailflow.actions import organization as operations
from mailflow.errors import Invalid, LabError
from mailflow.moves import common
from mailflow.moves.report import xml_report
from mailflow.moves.states import InvalidMoveTransition
from mailflow.moves.wizard2003 import InvalidStep
from routing import queues
from stores.audit import audit
from stores.messages import InvalidTransition

if TYPE_CHECKING:
    from mailflow.runtime.lab import Lab

log = logging.getLogger(__name__)

LAB: web.AppKey[Lab] = web.AppKey("lab")
MAX_BODY = 1024 * 1024
MAX_LIMIT = 100_000
# SQLite's integers are 64-bit.
MAX_OFFSET = 2**63 - 1
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, error: str, detail: Any = None) -> web.Response:
    return web.json_response({"error": error, "detail": detail}, status=status)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except LabError as exc:
        return _error(exc.status, str(exc))
    except (InvalidTransition, InvalidMoveTransition, InvalidStep,
            queues.InvalidQueueTransition) as exc:
        return _error(409, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, exc.reason)
    except Exception:
        log.exception("API request %s %s failed", request.method, request.path)
        return _error(500, "internal error")


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        expected = f"Bearer {request.app[LAB].token}".encode()
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return _error(401, "missing or wrong bearer token",
                          "send Authorization: Bearer <token from <data>/api-token>")
    return await handler(request)


def _page(request: web.Request) -> tuple[int, int]:
    try:
        limit = int(request.query.get("limit", "1000"))
        offset = int(request.query.get("offset", "0"))
    except ValueError as exc:
        raise Invalid("limit and offset must be whole numbers") from exc
    if not 0 < limit <= MAX_LIMIT or not 0 <= offset <= MAX_OFFSET:
        raise Invalid(f"limit must be 1..{MAX_LIMIT} and offset 0..{MAX_OFFSET}")
    return limit, offset


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Invalid(f"malformed JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise Invalid("the body must be a JSON object")
    return body


def _lab(request: web.Request) -> Lab:
    return request.app[LAB]


async def _read(request: web.Request, fn: Callable[..., Any], *args: Any) -> web.Response:
    result = await _lab(request).store.read(lambda conn: fn(conn, *args))
    return web.json_response(result)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    lab = _lab(request)
    loop = asyncio.get_running_loop()
    # Prometheus asks for OpenMetrics first; curl and browsers get the classic text format.
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    body = await loop.run_in_executor(None, encode, lab.registry)
    return web.Response(body=body, headers={"Content-Type": content_type})


async def topology(request: web.Request) -> web.Response:
    return await _read(request, views.topology, _lab(request).scenario)


async def status(request: web.Request) -> web.Response:
    lab = _lab(request)
    doc = await lab.store.read(lambda c: views.status(c, lab.scenario, lab.clock.now()))
    doc["endpoints"] = {name: lab.endpoint_address(name) for name in lab.endpoints}
    doc["api"] = lab.http_url
    return web.json_response(doc)


async def mailbox_list(request: web.Request) -> web.Response:
    return await _read(request, views.mailboxes, *_page(request))


async def mailbox_show(request: web.Request) -> web.Response:
    return await _read(request, views.mailbox, request.match_info["address"])


async def mailbox_messages(request: web.Request) -> web.Response:
    return await _read(request, views.mailbox_messages, request.match_info["address"],
                       *_page(request))


async def message_show(request: web.Request) -> web.Response:
    return await _read(request, views.message, request.match_info["id"])


async def message_raw(request: web.Request) -> web.Response:
    raw = await _lab(request).store.read(
        lambda c: views.raw_message(c, request.match_info["id"])
    )
    return web.Response(body=raw, content_type="message/rfc822")


def _time_field(body: dict[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if not _is_number(value):
        raise Invalid(f"{key} must be simulated epoch seconds")
    return float(value)


def _is_number(value: object) -> TypeGuard[float]:
    """A finite JSON number (json.loads reads NaN, Infinity and 1e400 as floats)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _flag(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise Invalid(f"{key} must be true or false")
    return value


def _count(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or value < 0):
        raise Invalid(f"{key} must be a whole number >= 0")
    return value


def _optional_text(body: dict[str, Any], key: str) -> str | None:
    return None if body.get(key) is None else _text(body, key)


def move_request(body: dict[str, Any]) -> moves.MoveRequest:
    """The body of POST /api/v1/moves as a request; every field is checked."""
    known = {"mailbox", "target", "hold", "at", "engine", "online", "bad_items",
             "bad_item_limit", "suspend_when_ready", "fail_at", "batch", "move_host"}
    if unknown := sorted(set(body) - known):
        raise Invalid(f"unknown field(s): {', '.join(unknown)}")
    return moves.MoveRequest(
        hold=_flag(body, "hold", False),
        at=_time_field(body, "at"),
        engine=_optional_text(body, "engine"),
        online=_flag(body, "online", True),
        bad_items=_count(body, "bad_items") or 0,
        bad_item_limit=_count(body, "bad_item_limit"),
        suspend_when_ready=_flag(body, "suspend_when_ready", False),
        fail_at=_optional_text(body, "fail_at"),
        batch=_optional_text(body, "batch"),
        move_host=_optional_text(body, "move_host"),
    )


async def move_create(request: web.Request) -> web.Response:
    lab = _lab(request)
    body = await _body(request)
    address, target = _text(body, "mailbox"), _text(body, "target")
    wanted = move_request(body)
    move_id = await lab.store.write(
        lambda tx: moves.start(tx, lab.scenario, address, target, wanted)
    )
    doc = await lab.store.read(lambda c: views.move(c, move_id, lab.clock.now()))
    return web.json_response(doc, status=201)


async def move_list(request: web.Request) -> web.Response:
    return await _read(request, views.move_list, _lab(request).clock.now(), *_page(request))


async def move_show(request: web.Request) -> web.Response:
    return await _read(request, views.move, request.match_info["id"], _lab(request).clock.now())


async def move_remove(request: web.Request) -> web.Response:
    lab, move_id = _lab(request), request.match_info["id"]
    await lab.store.write(lambda tx: moves.remove(tx, lab.scenario, move_id))
    return web.json_response({"removed": move_id})


async def move_report(request: web.Request) -> web.Response:
    report = await _lab(request).store.read(
        lambda c: xml_report(common.row(c, request.match_info["id"]))
    )
    return web.Response(body=report, content_type="application/xml")


def _move_action(action: Callable[..., None]) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        lab = _lab(request)
        move_id = request.match_info["id"]
        await lab.store.write(lambda tx: action(tx, lab.scenario, move_id))
        doc = await lab.store.read(lambda c: views.move(c, move_id, lab.clock.now()))
        return web.json_response(doc)

    return handler


async def event_list(request: web.Request) -> web.Response:
    try:
        after = int(request.query.get("after", "0"))
    except ValueError as exc:
        raise Invalid("after must be an event id") from exc
    return await _read(request, views.events, *_page(request), after)


async def audit_report(request: web.Request) -> web.Response:
    servers = {s.name for s in _lab(request).scenario.servers}
    report = await _lab(request).store.read(lambda c: audit(c, servers))
    return web.json_response(report.as_dict())


async def clock_show(request: web.Request) -> web.Response:
    lab = _lab(request)
    return web.json_response({"now": lab.clock.now(), "speed": lab.clock.speed})


async def clock_advance(request: web.Request) -> web.Response:
    body = await _body(request)
    seconds = body.get("seconds")
    if not _is_number(seconds) or seconds < 0:
        raise Invalid("seconds must be a number >= 0")
    now = await _lab(request).advance(float(seconds))
    return web.json_response({"now": now, "speed": _lab(request).clock.speed})


async def connector_list(request: web.Request) -> web.Response:
    return await _read(request, operations.list_connectors)


def _text(body: dict[str, Any], key: str, default: str | None = None) -> str:
    value = body.get(key, default)
    if not isinstance(value, str):
        raise Invalid(f"{key} must be a string")
    return value


async def connector_add(request: web.Request) -> web.Response:
    lab, body = _lab(request), await _body(request)
    cost = body.get("cost", 1)
    if isinstance(cost, bool) or not isinstance(cost, int):
        raise Invalid("cost must be a whole number")
    kind, a, b = _text(body, "type"), _text(body, "site_a"), _text(body, "site_b")
    name = _text(body, "name", "")
    doc = await lab.store.write(
        lambda tx: operations.add_connector(tx, lab.scenario, kind, a, b, cost, name)
    )
    return web.json_response(doc, status=201)


async def connector_remove(request: web.Request) -> web.Response:
    lab = _lab(request)
    try:
        connector_id = int(request.match_info["id"])
    except ValueError as exc:
        raise web.HTTPNotFound() from exc
    await lab.store.write(lambda tx: operations.remove_connector(tx, connector_id))
    return web.json_response({"removed": connector_id})


async def rpc_set(request: web.Request) -> web.Response:
    lab, body = _lab(request), await _body(request)
    a, b, allowed = _text(body, "a"), _text(body, "b"), body.get("allowed")
    if not isinstance(allowed, bool):
        raise Invalid("allowed must be true or false")
    doc = await lab.store.write(lambda tx: operations.set_rpc(tx, lab.scenario, a, b, allowed))
    return web.json_response(doc)


async def service_action(request: web.Request) -> web.Response:
    lab, info = _lab(request), request.match_info
    run = info["action"] == "start"
    doc = await lab.store.write(
        lambda tx: operations.set_service(tx, lab.scenario, info["server"], info["service"], run)
    )
    await lab.settle()
    return web.json_response(doc)


def build_app(lab: Lab) -> web.Application:
    app = web.Application(middlewares=[_errors, _auth], client_max_size=MAX_BODY)
    app[LAB] = lab
    v1 = "/api/v1"
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get(f"{v1}/status", status)
    app.router.add_get(f"{v1}/topology", topology)
    app.router.add_get(f"{v1}/mailboxes", mailbox_list)
    app.router.add_get(f"{v1}/mailboxes/{{address}}", mailbox_show)
    app.router.add_get(f"{v1}/mailboxes/{{address}}/messages", mailbox_messages)
    app.router.add_get(f"{v1}/messages/{{id}}", message_show)
    app.router.add_get(f"{v1}/messages/{{id}}/raw", message_raw)
    from mailflow.api import queues as api_queues

    api_queues.add_routes(app, v1)
    app.router.add_post(f"{v1}/moves", move_create)
    app.router.add_get(f"{v1}/moves", move_list)
    app.router.add_get(f"{v1}/moves/{{id}}", move_show)
    app.router.add_post(f"{v1}/moves/{{id}}/complete", _move_action(moves.complete))
    app.router.add_post(f"{v1}/moves/{{id}}/fail", _move_action(moves.fail))
    app.router.add_post(f"{v1}/moves/{{id}}/suspend", _move_action(moves.suspend))
    app.router.add_post(f"{v1}/moves/{{id}}/resume", _move_action(moves.resume))
    app.router.add_delete(f"{v1}/moves/{{id}}", move_remove)
    app.router.add_get(f"{v1}/moves/{{id}}/report", move_report)
    app.router.add_get(f"{v1}/connectors", connector_list)
    app.router.add_post(f"{v1}/connectors", connector_add)
    app.router.add_delete(f"{v1}/connectors/{{id}}", connector_remove)
    app.router.add_post(f"{v1}/rpc", rpc_set)
    app.router.add_post(f"{v1}/services/{{server}}/{{service}}/{{action:start|stop}}",
                        service_action)
    app.router.add_get(f"{v1}/events", event_list)
    app.router.add_get(f"{v1}/audit", audit_report)
    app.router.add_get(f"{v1}/clock", clock_show)
    app.router.add_post(f"{v1}/clock/advance", clock_advance)
    return app


async def serve(lab: Lab, host: str, port: int) -> tuple[web.AppRunner, str]:
    """Start the API; returns the runner (to clean up) and the URL it listens on."""
    runner = web.AppRunner(build_app(lab), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.Server)
    bound_host, bound_port = server.sockets[0].getsockname()[:2]
    return runner, f"http://{bound_host}:{bound_port}"
