"""The ``[[databases]]`` of a scenario: DAG mailbox databases and their copies (issue 19).

In: the scenario's top ``Table`` and its validated servers. Out: ``DatabaseSpec`` values,
each with its copies in activation-preference order (the first is active when the lab
starts) and its DataMoveReplicationConstraint (default SecondCopy when the database has
a second copy, None otherwise: seed 001), or ``ScenarioError`` naming the key.
"""

from __future__ import annotations

from mailflow.scenarios.table import NAME_LENGTH, ScenarioError, Table
from stores.topology import CONSTRAINTS, CopySpec, DatabaseSpec, Server, Version

# A DAG has at most 16 members, so a database at most 16 copies.
MAX_COPIES = 16
MAX_DATABASES = 100


def default_constraint(copies: int) -> str:
    """SecondCopy when there is a copy to wait for, None otherwise."""
    return "SecondCopy" if copies > 1 else "None"


def parse_databases(top: Table, servers: tuple[Server, ...]) -> tuple[DatabaseSpec, ...]:
    by_name = {s.name.upper(): s for s in servers}
    found: dict[str, DatabaseSpec] = {}
    for entry in top.tables("databases", ("name", "dag", "copies",
                                          "data_move_replication_constraint"), MAX_DATABASES):
        name = entry.text("name", longest=NAME_LENGTH)
        if name.upper() in found:
            raise entry.error("name", f"duplicate database {name!r}")
        copies = _copies(entry, by_name)
        constraint = entry.text("data_move_replication_constraint",
                                default_constraint(len(copies)))
        if constraint not in CONSTRAINTS:
            raise entry.error("data_move_replication_constraint",
                              f"unknown constraint {constraint!r}"
                              f" (expected: {', '.join(CONSTRAINTS)})")
        found[name.upper()] = DatabaseSpec(name, entry.text("dag", "DAG1", NAME_LENGTH),
                                           copies, constraint)
    return tuple(found.values())


def _copies(entry: Table, servers: dict[str, Server]) -> tuple[CopySpec, ...]:
    copies: dict[str, CopySpec] = {}
    tables = entry.tables("copies", ("server", "activation_preference", "site"), MAX_COPIES)
    if not tables:
        raise entry.error("copies", "at least one copy is required ([[databases.copies]])")
    for i, copy in enumerate(tables):
        name = copy.text("server")
        server = servers.get(name.upper())
        if server is None:
            raise copy.error("server", f"unknown server {name!r}")
        if server.version is not Version.V2010:
            raise copy.error("server", f"{server.name} is Exchange {server.version}: only"
                                       " Exchange 2010 servers are DAG members")
        if server.name.upper() in copies:
            raise copy.error("server", f"{server.name} already holds a copy of this database")
        site = copy.text("site", server.site)
        if site.upper() != server.site.upper():
            raise copy.error("site", f"{server.name} is in site {server.site}, not {site}")
        preference = copy.integer("activation_preference", i + 1, 1, MAX_COPIES)
        copies[server.name.upper()] = CopySpec(server.name, preference, server.site)
    ordered = tuple(sorted(copies.values(), key=lambda c: c.preference))
    if len({c.preference for c in ordered}) != len(ordered):
        raise entry.error("copies", "two copies have the same activation_preference")
    return ordered


def database_server(databases: tuple[DatabaseSpec, ...], table: Table, key: str
                    ) -> tuple[str, str]:
    """The database a mailbox names in ``key`` (canonical name) and its active copy's server."""
    name = table.text(key)
    for database in databases:
        if database.name.upper() == name.upper():
            return database.name, database.active_server
    known = ", ".join(d.name for d in databases) or "none"
    raise ScenarioError(table.file, table.path(key), f"unknown database {name!r} (known: {known})")
