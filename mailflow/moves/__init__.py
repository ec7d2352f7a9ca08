"""Mailbox moves: requests in; PR_IN_TRANSIT, the directory update and released mail out.

The front of the move engines. ``start`` checks a request and picks the engine
its Exchange versions used (``common.pick_engine``) unless one is named;
``complete``, ``fail``, ``suspend``, ``resume`` and ``remove`` act on a move
whatever its engine; ``run_due`` lets the clock drive them all; ``recover``
is what a restart does to moves that were running. The engines:
``wizard2003`` (the 2003 Move Mailbox wizard, also 2007's offline
Move-Mailbox as ``movemailbox2007``) and ``mrs2010`` (2010 move requests).
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import sqlite3

from mailflow.errors import Conflict, Invalid, NotFound
from mailflow.moves import common, mrs2010, wizard2003
from mailflow.moves.common import MoveRequest, describe
from mailflow.moves.states import FINAL, InvalidMoveTransition, MoveStatus
from stores import directory
from stores.db import Tx
from stores.topology import Scenario

__all__ = ["MoveRequest", "complete", "describe", "fail", "recover", "remove", "resume",
           "run_due", "start", "suspend"]


def start(tx: Tx, scenario: Scenario, address: str, target: str,
          request: MoveRequest | None = None) -> str:
    request = request or MoveRequest()
    home = directory.lookup(tx.conn, address)
    if home is None:
        raise NotFound(f"no mailbox {address!r}")
    if not scenario.has_server(target):
        raise NotFound(f"no server {target!r}")
    target = scenario.server(target).name
    if target == home.server:
        raise Invalid(f"{home.address} is already on {target}")
    engine = request.engine or common.pick_engine(
        scenario.server(home.server).version, scenario.server(target).version)
    if engine not in common.ENGINES:
        raise Invalid(f"engine must be one of {', '.join(common.ENGINES)}")
    if engine == mrs2010.ENGINE:
        mrs2010.transient_failures(request.fail_at)
        if request.fail_at is not None and not request.fail_at.startswith("transient:"):
            raise Invalid("an MRS move takes fail_at transient:N")
    else:
        common.check_fail_at(request, wizard2003.FAIL_POINTS)
    if request.move_host is not None and not scenario.has_server(request.move_host):
        raise NotFound(f"no server {request.move_host!r} to run the move from")
    if request.bad_items < 0 or (request.bad_item_limit or 0) < 0:
        raise Invalid("bad_items and bad_item_limit must be >= 0")
    _refuse_second_request(tx, home.address, engine)
    move_id = secrets.token_hex(4)
    start_at = tx.now if request.at is None else max(request.at, tx.now)
    step = (wizard2003.Step.WAIT_FOR_SCHEDULE.value if engine != mrs2010.ENGINE else "Queued")
    history = [{"status": MoveStatus.QUEUED.value, "status_detail": "Queued", "time": tx.now}]
    tx.conn.execute(
        "INSERT INTO moves(id, mailbox, source, target, engine, status, status_detail, hold,"
        " created_at, start_at, options, history, batch, step)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (move_id, home.address, home.server, target, engine, MoveStatus.QUEUED.value, "Queued",
         int(request.hold), tx.now, start_at, json.dumps(dataclasses.asdict(request)),
         json.dumps(history), request.batch, step),
    )
    run_due(tx, scenario)
    return move_id


def _refuse_second_request(tx: Tx, mailbox: str, engine: str) -> None:
    """One open move per mailbox; an MRS request blocks the next one until it is removed."""
    clash = tx.conn.execute(
        "SELECT id, engine, status FROM moves WHERE mailbox=? AND (status NOT IN (?,?,?)"
        " OR engine=?)", (mailbox, *sorted(s.value for s in FINAL), mrs2010.ENGINE),
    ).fetchone()
    if clash is not None:
        hint = " (remove it first)" if clash["engine"] == mrs2010.ENGINE else ""
        raise Conflict(f"{mailbox} already has move {clash['id']}, {clash['status']}{hint}")


def _open(tx: Tx, move_id: str, action: MoveStatus) -> sqlite3.Row:
    move = common.row(tx.conn, move_id)
    if MoveStatus(move["status"]) in FINAL:
        raise InvalidMoveTransition(move_id, MoveStatus(move["status"]), action)
    return move


def complete(tx: Tx, scenario: Scenario, move_id: str) -> None:
    move = _open(tx, move_id, MoveStatus.COMPLETED)
    engine = mrs2010 if move["engine"] == mrs2010.ENGINE else wizard2003
    engine.complete(tx, scenario, move)


def fail(tx: Tx, scenario: Scenario, move_id: str, reason: str = "failed by the operator"
         ) -> None:
    move = _open(tx, move_id, MoveStatus.FAILED)
    engine = mrs2010 if move["engine"] == mrs2010.ENGINE else wizard2003
    engine.fail(tx, scenario, move, reason)


def suspend(tx: Tx, scenario: Scenario, move_id: str) -> None:
    move = _open(tx, move_id, MoveStatus.SUSPENDED)
    if move["engine"] != mrs2010.ENGINE:
        raise Conflict(f"move {move_id} is a {move['engine']} move; only MRS requests suspend")
    mrs2010.suspend(tx, move)


def resume(tx: Tx, scenario: Scenario, move_id: str) -> None:
    move = _open(tx, move_id, MoveStatus.IN_PROGRESS)
    if move["engine"] != mrs2010.ENGINE:
        raise Conflict(f"move {move_id} is a {move['engine']} move; only MRS requests resume")
    mrs2010.resume(tx, scenario, move)


def remove(tx: Tx, scenario: Scenario, move_id: str) -> None:
    """Remove-MoveRequest: a move still running is cancelled (rolled back) first."""
    move = common.row(tx.conn, move_id)
    if MoveStatus(move["status"]) not in FINAL:
        fail(tx, scenario, move_id, "the move request was removed")
    tx.conn.execute("DELETE FROM moves WHERE id=?", (move_id,))


def run_due(tx: Tx, scenario: Scenario) -> int:
    return wizard2003.run_due(tx, scenario) + mrs2010.run_due(tx, scenario)


def recover(tx: Tx, scenario: Scenario) -> int:
    """At start-up: wizard moves caught mid-copy roll back; MRS requests simply go on."""
    return wizard2003.recover(tx, scenario)
