"""Operator actions on a running lab: connectors, RPC and services (queue actions are in
``mailflow.actions.queues``).

In: validated requests from the API. Out: the change in the store, an event
where Exchange would have logged one, and nothing else: the scheduler and the
transport pick up whatever the change made due.
"""

from __future__ import annotations

from typing import Any

from mailflow.errors import Conflict, Invalid, NotFound
from routing import mta
from stores import connectors, pairs, services
from stores.backend import Read, Tx
from stores.topology import CONNECTOR_LABELS, CONNECTOR_TYPES, Scenario


def _site(scenario: Scenario, name: str) -> str:
    for site in scenario.sites:
        if site.upper() == name.upper():
            return site
    raise NotFound(f"no site {name!r}; sites: {', '.join(scenario.sites)}")


def server_name(scenario: Scenario, name: str) -> str:
    """The scenario's spelling of server ``name``; NotFound when there is none."""
    if not scenario.has_server(name):
        raise NotFound(f"no server {name!r}")
    return scenario.server(name).name


def add_connector(
    tx: Tx, scenario: Scenario, kind: str, site_a: str, site_b: str, cost: int, name: str
) -> dict[str, Any]:
    if kind not in CONNECTOR_TYPES:
        raise Invalid(f"type must be one of {', '.join(CONNECTOR_TYPES)}")
    a, b = _site(scenario, site_a), _site(scenario, site_b)
    if a == b:
        raise Invalid("a connector joins two different sites")
    name = name or f"{a}-{b} {CONNECTOR_LABELS[kind]}"
    if connectors.by_name(tx, name) is not None:
        raise Conflict(f"a connector named {name!r} exists")
    connector_id = connectors.add(tx, kind, a, b, cost, name)
    tx.event("mailflow", 1010, "Information", "-", f"{CONNECTOR_LABELS[kind]} connector {name!r}"
             f" between {a} and {b} (cost {cost}) created.")
    added = connectors.by_id(tx, connector_id)
    assert added is not None
    return added.as_dict()


def remove_connector(tx: Tx, connector_id: int) -> None:
    gone = connectors.by_id(tx, connector_id)
    if gone is None or not connectors.remove(tx, connector_id):
        raise NotFound(f"no connector {connector_id}")
    tx.event("mailflow", 1011, "Information", "-", f"Connector {gone.name!r} removed.")


def set_rpc(tx: Tx, scenario: Scenario, a: str, b: str, allowed: bool) -> dict[str, Any]:
    first, second = server_name(scenario, a), server_name(scenario, b)
    if first == second:
        raise Invalid("RPC is always possible from a server to itself")
    connectors.set_rpc(tx, first, second, allowed=allowed)
    word = "allowed" if allowed else "blocked"
    tx.event("mailflow", 1012, "Information", first, f"RPC between {first} and {second} {word}.")
    return {"a": first, "b": second, "allowed": allowed}


def set_service(tx: Tx, scenario: Scenario, server: str, service: str, run: bool) -> dict[str, Any]:
    name = server_name(scenario, server)
    if service not in services.SERVICES:
        raise NotFound(f"no service {service!r}; services: {', '.join(services.SERVICES)}")
    if services.running(tx, name, service) == run:
        raise Conflict(f"{service} on {name} is already {'running' if run else 'stopped'}")
    services.set_running(tx, name, service, run)
    tx.event("Service Control Manager", 7036, "Information", name,
             f"The Microsoft Exchange MTA Stacks service entered the"
             f" {'running' if run else 'stopped'} state.")
    if run:
        # What waited for this MTA goes now: InTransitFolders and a 2003 in-transit flush.
        mta.flush_holding(tx, scenario, name)
        pairs.retry_deferred(tx, name, tx.now)
    return {"server": name, "service": service, "running": run}


def list_connectors(db: Read) -> list[dict[str, Any]]:
    return [c.as_dict() for c in connectors.all_connectors(db)]
