"""The DAG gates of an MRS request: the data guarantee and a dismounted database (seed 001).

In: a request whose phase is due (with the scenario and the store's DAG databases).
Out: a ``mrs_service.Stall`` when the request must wait, or None; the pure decision
``constraint_met`` of a DataMoveReplicationConstraint over a database's copies.

Fact sheet ("Exchange 2007 / 2010", DAG): with EnableDataGuaranteeCheck and a constraint
other than None, MRS asks Active Manager before, during and right before completing a
move whether the target database's copies keep up; while they do not, the request shows
StalledDueToHA (during the copy) or DataReplicationWait (before completion), is checked
again every DataGuaranteeCheckPeriod and fails after DataGuaranteeTimeout. A passive copy
keeps up when replication to it runs and its copy queue is empty (the replay queue does
not count: the logs are already on the copy's disk). A source or target database that is
dismounted stalls the request as MDBOffline, retried every RetryDelay up to MaxRetries; so
does a database that failed over during a request with constraint None, which MRS does not
follow (``lost_database`` in the request's progress).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from mailflow.moves import mrs_service
from mailflow.moves.mrs_service import Stall
from stores import databases
from stores.backend import Tx
from stores.databases import Database
from stores.moves import MoveRecord
from stores.topology import Scenario

# Phases (StatusDetail) after which MRS is about to complete: it then waits as
# DataReplicationWait rather than StalledDueToHA.
BEFORE_COMPLETION = frozenset({"IncrementalSync", "Finalization", "AutoSuspended"})


def constraint_met(constraint: str, active_site: str,
                   passives: Iterable[tuple[str, bool]]) -> bool:
    """Whether the (site, keeps up) passive copies satisfy ``constraint``.

    None always; SecondCopy: one passive copy keeps up; SecondDatacenter: one in another
    site than the active copy; AllDatacenters: one in every other site holding a copy (and
    at least one); AllCopies: every passive copy (and at least one)."""
    copies = list(passives)
    good = [site for site, ok in copies if ok]
    if constraint == "None":
        return True
    if not good:
        return False
    if constraint == "SecondCopy":
        return True
    if constraint == "SecondDatacenter":
        return any(site != active_site for site in good)
    if constraint == "AllDatacenters":
        return {s for s, _ in copies if s != active_site} <= set(good)
    return len(good) == len(copies)


def keeps_up(database: Database) -> bool:
    active = database.active
    passives = [(c.site, not c.suspended and c.copy_queue == 0)
                for c in database.copies if not c.active]
    return constraint_met(database.constraint, active.site, passives)


def data_guarantee(tx: Tx, scenario: Scenario, move: MoveRecord) -> Stall | None:
    """The target database's copies must satisfy its DataMoveReplicationConstraint."""
    d = scenario.defaults
    target = databases.of_server(tx, move.target)
    if not d.enable_data_guarantee_check or target is None or keeps_up(target):
        return None
    detail = "DataReplicationWait" if move.step in BEFORE_COMPLETION else "StalledDueToHA"
    period = d.data_guarantee_check_period_seconds
    return Stall(detail, "FailedOther", "DataGuaranteeTimeout (unconfirmed)", "Target",
                 f"the copies of {target.name} do not satisfy DataMoveReplicationConstraint"
                 f" {target.constraint}", "ha_checks", retry_seconds=period,
                 max_retries=math.ceil(d.data_guarantee_timeout_seconds / period),
                 limit_name="DataGuaranteeTimeout")


def mdb_offline(tx: Tx, scenario: Scenario, move: MoveRecord) -> Stall | None:
    """MRS cannot log on to a dismounted source or target database, nor to one that failed
    over while the request had constraint None (it keeps trying the old copy)."""
    lost = move.progress.get("lost_database")
    if lost is not None:
        now = databases.get(tx, lost)
        side = "Source" if now is not None and now.active.server == move.source else "Target"
        return Stall("MDBOffline", "FailedMAPI", "MapiExceptionMdbOffline (unconfirmed)", side,
                     f"{lost} failed over; with DataMoveReplicationConstraint None MRS keeps"
                     " trying the copy it was using", "mdb_offline_retries")
    for side, server in (("Source", move.source), ("Target", move.target)):
        database = databases.of_server(tx, server)
        if database is not None and not database.mounted:
            return Stall("MDBOffline", "FailedMAPI", "MapiExceptionMdbOffline (unconfirmed)",
                         side, f"the {side.lower()} database {database.name} is dismounted",
                         "mdb_offline_retries")
    return None


GATES: tuple[mrs_service.Gate, ...] = (mdb_offline, data_guarantee)
# The counters these gates keep in a stalled request's progress.
STALL_PROGRESS = ("ha_checks", "mdb_offline_retries")
