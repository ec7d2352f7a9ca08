"""What the Mailbox Replication Service needs before it works on a request (seed 001).

In: a new MRS request (its mailbox and target) or a request whose phase is due, with
the scenario and the store's RPC matrix and service states. Out: the MRS instance
that takes a new request (``pick_instance``: one of the 2010 Client Access servers of
the target's AD site, chosen by a RNG seeded with the scenario, the mailbox and the
lab time, so a lab replays the same way); whether the MRS limits let a queued request
start (``has_capacity``); and the first ``Stall`` of the gates a request passes at the
end of every phase (``first_stall``).

The gates are one tuple (``GATES``), so a check can be added as one more function:
today the network (RPC from the MRS instance to the source and the target, and the
MRS service running); the DAG's data-guarantee check (issue 19) goes beside it, with
its own StatusDetail (StalledDueToHA / DataReplicationWait) and its retry counter.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from mailflow.errors import Invalid
from mailflow.moves.states import MoveStatus
from routing.connectors import rpc_possible
from stores import moves as stored
from stores import services
from stores.backend import Tx
from stores.moves import MoveRecord
from stores.topology import Scenario

# Requests holding MRS capacity on their databases, servers and MRS instance.
ACTIVE = (MoveStatus.IN_PROGRESS, MoveStatus.COMPLETION_IN_PROGRESS)
# The lab's service of an MRS instance (``mailflow service stop SERVER mrs``).
SERVICE = "mrs"


@dataclass(frozen=True)
class Stall:
    """Why a request cannot go on now: shown as ``detail`` while it retries every RetryDelay,
    failed with ``failed_detail`` after MaxRetries; ``counter`` is its progress key."""

    detail: str
    failed_detail: str
    failure_type: str
    side: str | None
    reason: str
    counter: str
    # Issue 19: a gate with its own period and retry count (the data guarantee's
    # DataGuaranteeCheckPeriod and DataGuaranteeTimeout); None: RetryDelay and MaxRetries.
    retry_seconds: float | None = None
    max_retries: int | None = None
    limit_name: str = "MaxRetries"


Gate = Callable[[Tx, Scenario, MoveRecord], Stall | None]


def instances(scenario: Scenario, target: str) -> list[str]:
    """The MRS instances that may take a request to ``target``: the 2010 Client Access
    servers of its AD site."""
    site = scenario.server(target).site
    return sorted(s.name for s in scenario.servers if s.runs_mrs and s.site == site)


def pick_instance(scenario: Scenario, mailbox: str, target: str, now: float) -> str:
    """The instance New-MoveRequest tickles: one of ``instances`` at random, seeded."""
    found = instances(scenario, target)
    if not found:
        raise Invalid(f"no Exchange 2010 Client Access server in site"
                      f" {scenario.server(target).site} runs MRS for a move to {target}")
    return random.Random(f"{scenario.name}|{mailbox}|{now!r}").choice(found)


def has_capacity(tx: Tx, scenario: Scenario, move: MoveRecord, engine: str,
                 mrs_server: str | None) -> bool:
    """MaxActiveMovesPerSourceMDB/TargetMDB, PerSourceServer/TargetServer and
    MaxTotalMovesPerMRS (fact sheet). The lab has one database per server, so the
    database and server limits count the same requests; the tighter one decides."""
    d = scenario.defaults
    limits = (("source", move.source, min(d.mrs_max_active_moves_per_source_mdb,
                                          d.mrs_max_active_moves_per_source_server)),
              ("target", move.target, min(d.mrs_max_active_moves_per_target_mdb,
                                          d.mrs_max_active_moves_per_target_server)))
    if any(stored.count_active(tx, engine, column, server, ACTIVE) >= limit
           for column, server, limit in limits):
        return False
    return mrs_server is None or (stored.count_active_on_mrs(tx, engine, mrs_server, ACTIVE)
                                  < d.mrs_max_total_moves_per_mrs)


def network(tx: Tx, scenario: Scenario, move: MoveRecord) -> Stall | None:
    """MRS logs on to the source and target over RPC (MAPI) from its own server."""
    mrs_name = move.options.get("mrs_server") or move.target
    mrs = scenario.server(mrs_name)
    if not services.running(tx, mrs.name, SERVICE):
        return Stall("TransientFailure", "FailedNetwork", "MRS service stopped", None,
                     f"the MRS service on {mrs.name} is stopped", "network_retries")
    for side, name in (("Source", move.source), ("Target", move.target)):
        if not rpc_possible(tx, mrs, scenario.server(name)):
            return Stall("TransientFailure", "FailedNetwork",
                         "MapiExceptionNetworkError (unconfirmed)", side,
                         f"MRS on {mrs.name} cannot reach the {side.lower()} {name} over RPC",
                         "network_retries")
    return None


GATES: tuple[Gate, ...] = (network,)
# What a stall keeps in a request's progress: each gate's counter and the reason shown.
STALL_PROGRESS = ("network_retries", "stall_reason")


def first_stall(tx: Tx, scenario: Scenario, move: MoveRecord,
                gates: tuple[Gate, ...] = GATES) -> Stall | None:
    for gate in gates:
        stall = gate(tx, scenario, move)
        if stall is not None:
            return stall
    return None
