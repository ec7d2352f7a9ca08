"""Mailbox moves: requests in; PR_IN_TRANSIT, the directory update and released mail out.

The front of the move engines. ``start`` checks a request and picks the engine
its Exchange versions used (``common.pick_engine``) unless one is named;
``complete``, ``fail``, ``suspend``, ``resume`` and ``remove`` act on a move
whatever its engine; ``run_due`` lets the clock drive them all; ``recover``
is what a restart does to moves that were running. The engines:
``wizard2003`` (the 2003 Move Mailbox wizard, also 2007's offline
Move-Mailbox as ``movemailbox2007``) and ``mrs2010`` (2010 move requests).
The engines never import this module.
"""

from __future__ import annotations

import dataclasses
import secrets

from mailflow.errors import Conflict, Invalid, NotFound
from mailflow.moves import common, mrs2010, mrs_service, versions, wizard2003
from mailflow.moves.common import MoveRequest
from mailflow.moves.states import FINAL, MOVES, MoveStatus
from stores import directory
from stores import moves as stored
from stores.backend import Tx
from stores.moves import MoveRecord
from stores.topology import Scenario

__all__ = ["MoveRequest", "complete", "fail", "recover", "remove", "resume", "run_due",
           "start", "suspend"]


def _check(scenario: Scenario, request: MoveRequest, engine: str) -> None:
    """Refuse a request its engine cannot run (fail points, servers); the ranges of its
    numbers are checked where they enter (``mailflow.limits``)."""
    if engine == mrs2010.ENGINE:
        mrs2010.transient_failures(request.fail_at)
        if request.fail_at is not None and not request.fail_at.startswith("transient:"):
            raise Invalid("an MRS move takes fail_at transient:N")
    else:
        common.check_fail_at(request, wizard2003.FAIL_POINTS)
    if request.move_host is not None and not scenario.has_server(request.move_host):
        raise NotFound(f"no server {request.move_host!r} to run the move from")


def _effective(scenario: Scenario, request: MoveRequest, rule: versions.Rule) -> MoveRequest:
    """The request as its engine runs it, so the move shows what applies: online only where
    the version pair moves online (the 2003 wizard, 2007's Move-Mailbox and MRS pushes lock
    the mailbox for the whole move), and an unset bad-item limit is the engine's default."""
    limit = request.bad_item_limit
    if limit is None:
        limit = (scenario.defaults.mrs_bad_item_limit if rule.engine == mrs2010.ENGINE
                 else scenario.defaults.wizard_bad_item_limit)
    return dataclasses.replace(request, online=rule.online, bad_item_limit=limit,
                               direction=rule.direction and rule.direction.value)


def start(tx: Tx, scenario: Scenario, address: str, target: str,
          request: MoveRequest | None = None) -> str:
    request = request or MoveRequest()
    home = directory.lookup(tx, address)
    if home is None:
        raise NotFound(f"no mailbox {address!r}")
    if not scenario.has_server(target):
        raise NotFound(f"no server {target!r}")
    target = scenario.server(target).name
    if target == home.server:
        raise Invalid(f"{home.address} is already on {target}")
    if request.engine is not None and request.engine not in common.ENGINES:
        raise Invalid(f"engine must be one of {', '.join(common.ENGINES)}")
    rule = versions.rule(scenario.server(home.server).version,
                         scenario.server(target).version, request.engine, request.online)
    engine = rule.engine
    _check(scenario, request, engine)
    versions.check_archive(_has_archive(scenario, home.address), scenario.server(target).version)
    request = _effective(scenario, request, rule)
    if engine == mrs2010.ENGINE:
        request = dataclasses.replace(request, mrs_server=mrs_service.pick_instance(
            scenario, home.address, target, tx.now))
    _refuse_second_request(tx, home.address, engine)
    step = (wizard2003.WizardStep.WAIT_FOR_SCHEDULE.value if engine != mrs2010.ENGINE
            else mrs2010.Phase.QUEUED.value)
    move = MoveRecord(
        id=secrets.token_hex(4), mailbox=home.address, source=home.server, target=target,
        engine=engine, status=MoveStatus.QUEUED, status_detail="Queued", step=step,
        hold=request.hold, created_at=tx.now,
        start_at=tx.now if request.at is None else max(request.at, tx.now),
        options=dataclasses.asdict(request), batch=request.batch,
        history=({"status": MoveStatus.QUEUED.value, "status_detail": "Queued",
                  "time": tx.now},),
    )
    stored.insert(tx, move)
    if request.suspend:
        if engine != mrs2010.ENGINE:
            raise Invalid("only MRS requests are created suspended (-Suspend)")
        mrs2010.suspend(tx, move)
    run_due(tx, scenario)
    return move.id


def _has_archive(scenario: Scenario, address: str) -> bool:
    return address.lower() in scenario.archived


def _refuse_second_request(tx: Tx, mailbox: str, engine: str) -> None:
    """One open move per mailbox; an MRS request blocks the next one until it is removed."""
    clash = stored.blocking(tx, mailbox, mrs2010.ENGINE)
    if clash is not None:
        hint = " (remove it first)" if clash.engine == mrs2010.ENGINE else ""
        raise Conflict(f"{mailbox} already has move {clash.id}, {clash.status.value}{hint}")


def _open(tx: Tx, move_id: str, action: MoveStatus) -> MoveRecord:
    """The move, if it is not final; a final one cannot take ``action``."""
    move = common.load(tx, move_id)
    if move.status in FINAL:
        MOVES.move(move_id, move.status, action)
    return move


def complete(tx: Tx, scenario: Scenario, move_id: str) -> None:
    move = _open(tx, move_id, MoveStatus.COMPLETED)
    engine = mrs2010 if move.engine == mrs2010.ENGINE else wizard2003
    engine.complete(tx, scenario, move)


def fail(tx: Tx, scenario: Scenario, move_id: str, reason: str = "failed by the operator"
         ) -> None:
    move = _open(tx, move_id, MoveStatus.FAILED)
    engine = mrs2010 if move.engine == mrs2010.ENGINE else wizard2003
    engine.fail(tx, scenario, move, reason)


def suspend(tx: Tx, scenario: Scenario, move_id: str) -> None:
    move = _open(tx, move_id, MoveStatus.SUSPENDED)
    if move.engine != mrs2010.ENGINE:
        raise Conflict(f"move {move_id} is a {move.engine} move; only MRS requests suspend")
    mrs2010.suspend(tx, move)


def resume(tx: Tx, scenario: Scenario, move_id: str) -> None:
    move = _open(tx, move_id, MoveStatus.IN_PROGRESS)
    if move.engine != mrs2010.ENGINE:
        raise Conflict(f"move {move_id} is a {move.engine} move; only MRS requests resume")
    mrs2010.resume(tx, scenario, move)


def remove(tx: Tx, scenario: Scenario, move_id: str) -> None:
    """Remove-MoveRequest: a move still running is cancelled (rolled back) first."""
    move = common.load(tx, move_id)
    if move.status not in FINAL:
        fail(tx, scenario, move_id, "the move request was removed")
    stored.delete(tx, move_id)


def run_due(tx: Tx, scenario: Scenario) -> int:
    return wizard2003.run_due(tx, scenario) + mrs2010.run_due(tx, scenario)


def recover(tx: Tx, scenario: Scenario) -> int:
    """At start-up: wizard moves caught mid-copy roll back; MRS requests simply go on."""
    return wizard2003.recover(tx, scenario)
