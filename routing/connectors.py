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
    def internal(self) -> bool:
        """Hops the MTA carries; until routing.mta models it these cross in one step."""
        return self.transport in ("rpc", "x400")


def seed(conn: sqlite3.Connection, scenario: Scenario) -> None:
    for spec in scenario.connectors:
        name = spec.name or f"{spec.site_a}-{spec.site_b} {spec.type}"
        conn.execute(
            "INSERT INTO connectors(type, site_a, site_b, cost, name) VALUES (?,?,?,?,?)",
            (spec.type, spec.site_a, spec.site_b, spec.cost, name),
        )
    for a, b in scenario.rpc_allow:
        conn.execute(
            "INSERT OR REPLACE INTO rpc(server_a, server_b, allowed) VALUES (?,?,1)", (a, b)
        )


def _connectors(conn: sqlite3.Connection, site_a: str, site_b: str) -> list[sqlite3.Row]:
    return list(
        conn.execute(
            "SELECT * FROM connectors WHERE (site_a=? AND site_b=?) OR (site_a=? AND site_b=?)"
            " ORDER BY cost, id",
            (site_a, site_b, site_b, site_a),
        )
    )


def next_hop(conn: sqlite3.Connection, source: Server, home: Server) -> Hop:
    if source.name == home.name:
        return Hop("local", home.name, "local")
    speaks_smtp = source.version != "5.5" and home.version != "5.5"
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
