"""Connectors between sites and RPC overrides between servers, as the store keeps them.

In: connector specs and RPC settings (seeded from the scenario, changed by the
operator at run time). Out: ``Connector`` records (by id, by name, between two
sites in routing order, all), and whether RPC between two servers is set
allowed or blocked (None: sites and connectors decide, ``routing.connectors``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from stores.backend import Conn
from stores.topology import Scenario


class Connector(NamedTuple):
    id: int
    type: str  # "site", "x400" or "smtp"
    site_a: str
    site_b: str
    cost: int
    name: str

    def far_site(self, site: str) -> str:
        """The site at the other end from ``site``."""
        return self.site_b if self.site_a == site else self.site_a

    def as_dict(self) -> dict[str, Any]:
        return self._asdict()


_COLUMNS = "id, type, site_a, site_b, cost, name"


def seed(conn: Conn, scenario: Scenario) -> None:
    for spec in scenario.connectors:
        name = spec.name or f"{spec.site_a}-{spec.site_b} {spec.type}"
        add(conn, spec.type, spec.site_a, spec.site_b, spec.cost, name)
    for a, b in scenario.rpc_allow:
        set_rpc(conn, a, b, allowed=True)


def add(conn: Conn, kind: str, site_a: str, site_b: str, cost: int, name: str) -> int:
    cur = conn.execute(
        "INSERT INTO connectors(type, site_a, site_b, cost, name) VALUES (?,?,?,?,?)"
        " RETURNING id",
        (kind, site_a, site_b, cost, name),
    )
    return int(cur.fetchone()[0])


def remove(conn: Conn, connector_id: int) -> bool:
    return conn.execute("DELETE FROM connectors WHERE id=?", (connector_id,)).rowcount == 1


def by_id(conn: Conn, connector_id: int) -> Connector | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM connectors WHERE id=?",
                       (connector_id,)).fetchone()
    return None if row is None else Connector(*row)


def by_name(conn: Conn, name: str) -> Connector | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM connectors WHERE name=?", (name,)).fetchone()
    return None if row is None else Connector(*row)


def between(conn: Conn, site_a: str, site_b: str) -> list[Connector]:
    """The connectors joining two sites, cheapest first."""
    return [Connector(*r) for r in conn.execute(
        f"SELECT {_COLUMNS} FROM connectors WHERE (site_a=? AND site_b=?)"
        " OR (site_a=? AND site_b=?) ORDER BY cost, id",
        (site_a, site_b, site_b, site_a),
    )]


def all_connectors(conn: Conn) -> list[Connector]:
    return [Connector(*r) for r in conn.execute(f"SELECT {_COLUMNS} FROM connectors ORDER BY id")]


def set_rpc(conn: Conn, a: str, b: str, *, allowed: bool) -> None:
    """Allow or block RPC between two servers, overriding what sites and connectors imply."""
    first, second = sorted((a, b))
    conn.execute(
        "INSERT INTO rpc(server_a, server_b, allowed) VALUES (?,?,?)"
        " ON CONFLICT(server_a, server_b) DO UPDATE SET allowed=excluded.allowed",
        (first, second, int(allowed)),
    )


def rpc_setting(conn: Conn, a: str, b: str) -> bool | None:
    """Whether RPC between two servers was set allowed or blocked; None when never set."""
    first, second = sorted((a, b))
    row = conn.execute(
        "SELECT allowed FROM rpc WHERE server_a=? AND server_b=?", (first, second)
    ).fetchone()
    return None if row is None else bool(row[0])

