"""Operator actions on DAG databases (issue 19): lag, suspend and resume a copy, fail over,
dismount and mount.

In: validated requests from the API (database and server names, queue lengths). Out: the
change in the store, an MSExchangeRepl event for each, and the database as ``describe``
shows it; the scheduler picks up what a change made due (a stalled move's next check, mail
waiting for a dismounted database).
"""

from __future__ import annotations

from typing import Any

from mailflow.actions.organization import server_name
from mailflow.errors import Conflict, Invalid, NotFound
from mailflow.moves import mrs2010
from routing import deferred
from stores import databases, pairs
from stores.backend import Read, Tx
from stores.databases import Copy, CopyStatus, Database
from stores.machine import Machine
from stores.topology import Scenario

SOURCE = "MSExchangeRepl"
# Event ids of the lab's replication events (unconfirmed: the lab's own numbering).
EVENT_LAG, EVENT_SUSPEND, EVENT_RESUME, EVENT_FAILOVER, EVENT_DISMOUNT, EVENT_MOUNT = (
    1040, 1041, 1042, 1043, 1044, 1045)


# A copy's states: dismount and mount the active one, suspend and resume a passive one, fail
# over from the active one to a passive one. A passive copy's queue lengths change without a
# change of state.
C = CopyStatus
COPY_STATES = Machine.of_targets("DAG copy", {
    C.MOUNTED: frozenset({C.DISMOUNTED, C.HEALTHY}),
    C.DISMOUNTED: frozenset({C.MOUNTED, C.HEALTHY}),
    C.HEALTHY: frozenset({C.SUSPENDED, C.MOUNTED}),
    C.SUSPENDED: frozenset({C.HEALTHY, C.MOUNTED}),
})


def _change(database: Database, copy: Copy, status: CopyStatus) -> None:
    """Refuse (409) a change the copy's state does not allow."""
    COPY_STATES.move(f"{database.name}\\{copy.server}", database.status(copy), status)


def describe_copy(database: Database, copy: Copy) -> dict[str, Any]:
    return {"database": database.name, "server": copy.server, "site": copy.site,
            "activation_preference": copy.preference, "active": copy.active,
            "status": database.status(copy).value, "copy_queue_length": copy.copy_queue,
            "replay_queue_length": copy.replay_queue}


def describe(database: Database) -> dict[str, Any]:
    return {"name": database.name, "dag": database.dag,
            "data_move_replication_constraint": database.constraint,
            "mounted": database.mounted, "active_server": database.active.server,
            "copies": [describe_copy(database, c) for c in database.copies]}


def list_databases(db: Read) -> list[dict[str, Any]]:
    return [describe(d) for d in databases.all_databases(db)]


def show(db: Read, name: str) -> dict[str, Any]:
    return describe(_database(db, name))


def _database(db: Read, name: str) -> Database:
    found = databases.get(db, name)
    if found is None:
        raise NotFound(f"no database {name!r}")
    return found


def _passive(tx: Tx, scenario: Scenario, name: str, server: str) -> tuple[Database, Copy]:
    database = _database(tx, name)
    copy = database.copy(server_name(scenario, server))
    if copy is None:
        raise NotFound(f"{server} holds no copy of {database.name}")
    if copy.active:
        raise Invalid(f"{copy.server} holds the active copy of {database.name}:"
                      " only a passive copy lags or is suspended")
    return database, copy


def lag(tx: Tx, scenario: Scenario, name: str, server: str, copy_queue: int,
        replay_queue: int | None) -> dict[str, Any]:
    database, copy = _passive(tx, scenario, name, server)
    replay = copy.replay_queue if replay_queue is None else replay_queue
    databases.set_queues(tx, database.name, copy.server, copy_queue, replay)
    tx.event(SOURCE, EVENT_LAG, "Information", copy.server,
             f"Copy {database.name}\\{copy.server}: copy queue length {copy_queue},"
             f" replay queue length {replay}.")
    return show(tx, database.name)


def set_suspended(tx: Tx, scenario: Scenario, name: str, server: str,
                  suspend: bool) -> dict[str, Any]:
    database, copy = _passive(tx, scenario, name, server)
    _change(database, copy, CopyStatus.SUSPENDED if suspend else CopyStatus.HEALTHY)
    databases.set_suspended(tx, database.name, copy.server, suspend)
    word = "suspended" if suspend else "resumed"
    tx.event(SOURCE, EVENT_SUSPEND if suspend else EVENT_RESUME, "Information", copy.server,
             f"Replication to {database.name}\\{copy.server} {word}.")
    return show(tx, database.name)


def failover(tx: Tx, scenario: Scenario, name: str, server: str) -> dict[str, Any]:
    """Activate the copy on ``server``: the database is mounted there, its mailboxes and the
    moves going on with it follow (with constraint None the MRS requests keep trying the old
    copy, and fail), and mail waiting for it is tried again now."""
    database = _database(tx, name)
    copy = database.copy(server_name(scenario, server))
    old = database.active.server
    if copy is None:
        raise NotFound(f"{server} holds no copy of {database.name}")
    _change(database, copy, CopyStatus.MOUNTED)
    _change(database, database.active, CopyStatus.HEALTHY)
    if databases.hosts_mailboxes(tx, copy.server):
        raise Conflict(f"{copy.server} already holds mailboxes; the lab keeps one active"
                       " database per server")
    if database.constraint == "None":
        # Seed 001: without a constraint MRS does not follow the failover; it retries the
        # database where it was, every RetryDelay up to MaxRetries (data_guarantee.mdb_offline).
        databases.strand_moves(tx, old, mrs2010.ENGINE, database.name)
    databases.activate(tx, database.name, copy.server)
    databases.set_mounted(tx, database.name, True)
    rehomed = databases.carry_over(tx, scenario, old, copy.server)
    _retry_waiting(tx, scenario, old)
    tx.event(SOURCE, EVENT_FAILOVER, "Warning", copy.server,
             f"Database {database.name} failed over from {old} to {copy.server}"
             f" ({rehomed} mailboxes).")
    return show(tx, database.name)


def set_mounted(tx: Tx, scenario: Scenario, name: str, mount: bool) -> dict[str, Any]:
    database = _database(tx, name)
    _change(database, database.active, CopyStatus.MOUNTED if mount else CopyStatus.DISMOUNTED)
    databases.set_mounted(tx, database.name, mount)
    server = database.active.server
    if mount:
        _retry_waiting(tx, scenario, server)
    word = "mounted" if mount else "dismounted"
    tx.event(SOURCE, EVENT_MOUNT if mount else EVENT_DISMOUNT,
             "Information" if mount else "Warning", server,
             f"Database {database.name} {word} on {server}.")
    return show(tx, database.name)


def _retry_waiting(tx: Tx, scenario: Scenario, server: str) -> None:
    """Mail parked in ``server``'s mailbox delivery queue is due now."""
    queue = deferred.parking_queue(scenario.server(server))
    pairs.retry_deferred(tx, server, tx.now, queue=queue)
