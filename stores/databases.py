"""DAG databases and their copies at rest (issue 19): tables ``dag_databases`` and ``dag_copies``.

In: the scenario's ``[[databases]]`` (seeded once), and the operator's changes: a copy's
copy and replay queue lengths, suspending and resuming replication to a copy, failing the
database over to another copy, dismounting and mounting it. Out: ``Database`` values with
their ``Copy`` rows, and the database whose active copy a server holds. Nothing here
decides whether a constraint is met: that is ``mailflow.moves.data_guarantee``.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

from stores import directory
from stores.backend import Conn, Read, Tx
from stores.moves import FINAL
from stores.sql import marks
from stores.topology import Scenario


class CopyStatus(enum.StrEnum):
    """A copy's state as Get-MailboxDatabaseCopyStatus words: the active copy is Mounted or
    Dismounted; a passive one Healthy (its queues say how far it lags) or Suspended."""

    MOUNTED = "Mounted"
    DISMOUNTED = "Dismounted"
    HEALTHY = "Healthy"
    SUSPENDED = "Suspended"


@dataclass(frozen=True)
class Copy:
    database: str
    server: str
    site: str
    preference: int
    active: bool
    copy_queue: int
    replay_queue: int
    suspended: bool


@dataclass(frozen=True)
class Database:
    name: str
    dag: str
    constraint: str
    mounted: bool
    copies: tuple[Copy, ...]

    @property
    def active(self) -> Copy:
        return next(c for c in self.copies if c.active)

    def status(self, copy: Copy) -> CopyStatus:
        if copy.active:
            return CopyStatus.MOUNTED if self.mounted else CopyStatus.DISMOUNTED
        return CopyStatus.SUSPENDED if copy.suspended else CopyStatus.HEALTHY

    def copy(self, server: str) -> Copy | None:
        return next((c for c in self.copies if c.server.upper() == server.upper()), None)


def seed(conn: Conn, scenario: Scenario) -> None:
    """Every database of the scenario, mounted on its preferred copy, no copy lagging."""
    for spec in scenario.databases:
        conn.execute("INSERT INTO dag_databases(name, dag, replication_constraint)"
                     " VALUES (?,?,?)", (spec.name, spec.dag, spec.constraint))
        conn.executemany(
            "INSERT INTO dag_copies(database, server, site, preference, active) VALUES (?,?,?,?,?)",
            [(spec.name, c.server, c.site, c.preference, int(i == 0))
             for i, c in enumerate(spec.copies)])


def _copy(row: Any) -> Copy:
    return Copy(row["database"], row["server"], row["site"], row["preference"],
                bool(row["active"]), row["copy_queue"], row["replay_queue"],
                bool(row["suspended"]))


def _database(conn: Read, row: Any) -> Database:
    copies = conn.execute("SELECT * FROM dag_copies WHERE database=? ORDER BY preference",
                          (row["name"],)).fetchall()
    return Database(row["name"], row["dag"], row["replication_constraint"],
                    bool(row["mounted"]), tuple(_copy(c) for c in copies))


def all_databases(conn: Read) -> list[Database]:
    rows = conn.execute("SELECT * FROM dag_databases ORDER BY name").fetchall()
    return [_database(conn, row) for row in rows]


def get(conn: Read, name: str) -> Database | None:
    row = conn.execute("SELECT * FROM dag_databases WHERE upper(name) = upper(?)",
                       (name,)).fetchone()
    return None if row is None else _database(conn, row)


def of_server(conn: Read, server: str) -> Database | None:
    """The DAG database whose active copy ``server`` holds, if any."""
    row = conn.execute(
        "SELECT d.* FROM dag_databases d JOIN dag_copies c ON c.database = d.name"
        " WHERE c.active = 1 AND upper(c.server) = upper(?) ORDER BY d.name", (server,)
    ).fetchone()
    return None if row is None else _database(conn, row)


def set_queues(tx: Tx, database: str, server: str, copy_queue: int, replay_queue: int) -> None:
    tx.execute("UPDATE dag_copies SET copy_queue=?, replay_queue=? WHERE database=? AND server=?",
               (copy_queue, replay_queue, database, server))


def set_suspended(tx: Tx, database: str, server: str, flag: bool) -> None:
    tx.execute("UPDATE dag_copies SET suspended=? WHERE database=? AND server=?",
               (int(flag), database, server))


def activate(tx: Tx, database: str, server: str) -> None:
    """Make ``server``'s copy the active one; the old active becomes a healthy passive."""
    tx.execute("UPDATE dag_copies SET active = CASE WHEN server = ? THEN 1 ELSE 0 END,"
               " copy_queue = 0, replay_queue = 0,"
               " suspended = 0 WHERE database=? AND (active = 1 OR server = ?)",
               (server, database, server))


def set_mounted(tx: Tx, database: str, flag: bool) -> None:
    tx.execute("UPDATE dag_databases SET mounted=? WHERE name=?", (int(flag), database))


def hosts_mailboxes(conn: Read, server: str) -> bool:
    """Whether ``server``'s store holds any mailbox (the lab keeps one active database
    per server, so a failover may not land on a server that has one)."""
    return conn.execute("SELECT 1 FROM store_mailboxes WHERE server=? LIMIT 1",
                        (server,)).fetchone() is not None


def strand_moves(tx: Tx, server: str, engine: str, database: str) -> int:
    """Open ``engine`` requests from or to ``server`` keep trying ``database`` there
    (``lost_database`` in their progress) instead of following it elsewhere."""
    final = tuple(s.value for s in FINAL)
    rows = tx.execute(
        "SELECT id, progress FROM moves WHERE engine=? AND (source=? OR target=?)"
        f" AND status NOT IN ({marks(final)})", (engine, server, server, *final)).fetchall()
    for move_id, progress in rows:
        stranded = {**json.loads(progress), "lost_database": database}
        tx.execute("UPDATE moves SET progress=? WHERE id=?", (json.dumps(stranded), move_id))
    return len(rows)


def carry_over(tx: Tx, scenario: Scenario, old: str, new: str) -> int:
    """A failover from ``old`` to ``new``: the database's mailboxes, their items, their
    directory home and the moves going on from or to it now live on ``new``. Returns how
    many mailboxes the directory rehomed."""
    for table in ("store_mailboxes", "items"):
        tx.execute(f"UPDATE {table} SET server=? WHERE server=?", (new, old))
    home = directory.home_attributes(scenario, scenario.server(new))
    rehomed = tx.execute(
        "UPDATE mailboxes SET server=?, home_mdb=?, home_mta=?, home_server_name=?"
        " WHERE server=?",
        (new, home["home_mdb"], home["home_mta"], home["home_server_name"], old)).rowcount
    final = tuple(s.value for s in FINAL)
    for column in ("source", "target"):
        tx.execute(f"UPDATE moves SET {column}=? WHERE {column}=? AND status NOT IN"
                   f" ({marks(final)})", (new, old, *final))
    return rehomed


def dismounted_at(conn: Read, server: str) -> bool:
    """Whether ``server`` holds the active copy of a dismounted database."""
    return conn.execute(
        "SELECT 1 FROM dag_copies c JOIN dag_databases d ON d.name = c.database"
        " WHERE c.server = ? AND c.active = 1 AND d.mounted = 0 LIMIT 1", (server,)
    ).fetchone() is not None


# StatusDetail of a move the data guarantee holds (``TotalStalledDueToHADuration``).
STALLED_HA = ("StalledDueToHA", "DataReplicationWait")


def ha_stalls_since(conn: Read) -> list[float]:
    """When each move stalled by the data guarantee now entered that stall (lab time)."""
    rows = conn.execute(f"SELECT history FROM moves WHERE status_detail IN ({marks(STALLED_HA)})",
                        STALLED_HA).fetchall()
    return [json.loads(row["history"])[-1]["time"] for row in rows]
