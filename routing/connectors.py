"""Connectors between sites, RPC reachability between servers, and the next hop.

In: a source server and the home server of a recipient.
Out: a ``Hop``: deliver locally, relay over real SMTP into a link queue
``smtp:<SERVER>``, or cross by the internal MTA hop (RPC within a site or
over a site connector, X.400 across an X.400 connector), or no route at all.
Connectors and RPC pairs are seeded from the scenario and change at run time.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Literal

from stores.topology import Scenario, Server

Transport = Literal["local", "smtp", "rpc", "x400", "none"]


@dataclass(frozen=True)
class Hop:
    transport: Transport
    target: str
    queue: str | None

    @property
    def mta(self) -> bool:
        """Hops the MTA carries, through its queues ``mta:<SERVER>`` and ``mta:x400:<NAME>``."""
        return self.transport in ("rpc", "x400")


def seed(conn: sqlite3.Connection, scenario: Scenario) -> None:
    for spec in scenario.connectors:
        name = spec.name or f"{spec.site_a}-{spec.site_b} {spec.type}"
        add(conn, spec.type, spec.site_a, spec.site_b, spec.cost, name)
    for a, b in scenario.rpc_allow:
        set_rpc(conn, a, b, allowed=True)


def add(conn: sqlite3.Connection, kind: str, site_a: str, site_b: str, cost: int, name: str) -> int:
    cur = conn.execute(
        "INSERT INTO connectors(type, site_a, site_b, cost, name) VALUES (?,?,?,?,?)",
        (kind, site_a, site_b, cost, name),
    )
    assert cur.lastrowid is not None
    return cur.lastrowid


def remove(conn: sqlite3.Connection, connector_id: int) -> bool:
    return conn.execute("DELETE FROM connectors WHERE id=?", (connector_id,)).rowcount == 1


def by_name(conn: sqlite3.Connection, name: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM connectors WHERE name=?", (name,)
    ).fetchone()
    return row


def set_rpc(conn: sqlite3.Connection, a: str, b: str, *, allowed: bool) -> None:
    """Allow or block RPC between two servers, overriding what sites and connectors imply."""
    first, second = sorted((a, b))
    conn.execute(
        "INSERT INTO rpc(server_a, server_b, allowed) VALUES (?,?,?)"
        " ON CONFLICT(server_a, server_b) DO UPDATE SET allowed=excluded.allowed",
        (first, second, int(allowed)),
    )


def rpc_possible(conn: sqlite3.Connection, a: Server, b: Server) -> bool:
    """RPC binds within a site or over a site connector, unless set otherwise for the pair."""
    first, second = sorted((a.name, b.name))
    row = conn.execute(
        "SELECT allowed FROM rpc WHERE server_a=? AND server_b=?", (first, second)
    ).fetchone()
    if row is not None:
        return bool(row[0])
    if a.site == b.site:
        return True
    return any(c["type"] == "site" for c in _connectors(conn, a.site, b.site))


def _connectors(conn: sqlite3.Connection, site_a: str, site_b: str) -> list[sqlite3.Row]:
    return list(
        conn.execute(
            "SELECT * FROM connectors WHERE (site_a=? AND site_b=?) OR (site_a=? AND site_b=?)"
            " ORDER BY cost, id",
            (site_a, site_b, site_b, site_a),
        )
    )


def next_hop(
    conn: sqlite3.Connection, source: Server, home: Server, *, mta: bool = False
) -> Hop:
    """The routing table's choice; ``mta`` asks for the MTA's own choice (XAPI connections only)."""
    if source.name == home.name:
        return Hop("local", home.name, "local")
    speaks_smtp = not mta and source.version != "5.5" and home.version != "5.5"
    if source.site == home.site:
        if speaks_smtp:
            return Hop("smtp", home.name, f"smtp:{home.name}")
        return Hop("rpc", home.name, f"mta:{home.name}")
    for connector in _connectors(conn, source.site, home.site):
        if connector["type"] == "smtp" and speaks_smtp:
            return Hop("smtp", home.name, f"smtp:{home.name}")
        if connector["type"] == "site":
            return Hop("rpc", home.name, f"mta:{home.name}")
        if connector["type"] == "x400":
            return Hop("x400", home.name, f"mta:x400:{connector['name']}")
    return Hop("none", home.name, None)
