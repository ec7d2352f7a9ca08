"""Operator actions on the mixed-mode directory: show and edit objects, groups, the ADC.

In: validated requests from the API. Out: an object side by side in every
replica (``show``), a change on one 5.5 replica as the 5.5 Administrator
makes it (``edit``), the groups, and the ADC's status, runs, stop and start
(``routing.adc`` does the work). Unknown names raise ``NotFound``; the ADC of
a scenario without a 5.5 server raises ``Conflict``.
"""

from __future__ import annotations

from typing import Any

from mailflow.errors import Conflict, Invalid, NotFound
from routing import adc
from stores import adc as stored_adc
from stores import directory, replicas
from stores.backend import Read, Tx
from stores.topology import Scenario

# Attributes an edit may set: anything but what names the object in its replica.
_FIXED = frozenset({"dn", "legacyExchangeDN", "mailbox", "state", "owner"})


def _ad(conn: Read, address: str) -> dict[str, Any]:
    found = directory.find(conn, address)
    if found is None:
        raise NotFound(f"no directory object {address!r}")
    return found


def show(conn: Read, scenario: Scenario, address: str) -> dict[str, Any]:
    """The object in AD and in each site's 5.5 directory (``absent`` where it has none)."""
    ad = _ad(conn, address)
    found = replicas.objects(conn, ad["address"])
    sites = {row["replica"] for row in found}
    absent = [{"replica": s, "state": "absent"} for s in scenario.sites
              if scenario.mixed and s not in sites]
    member_of = [g["address"] for g in stored_adc.udgs(conn) if ad["address"] in g["members"]]
    return {"address": ad["address"],
            "replicas": [{"replica": replicas.AD, "state": "present", **ad,
                          "member_of": member_of}, *found, *absent]}


def _site(scenario: Scenario, name: str) -> str:
    for site in scenario.sites:
        if site.upper() == name.upper():
            return site
    raise NotFound(f"no 5.5 directory {name!r}; replicas: {', '.join(scenario.sites)}")


def edit(tx: Tx, scenario: Scenario, address: str, replica: str,
         changes: dict[str, str]) -> dict[str, Any]:
    """Change attributes of the object in one 5.5 directory; the ADC carries it to AD."""
    if not scenario.mixed:
        raise Conflict("this organization has no 5.5 directory (no 5.5 server)")
    if not changes or _FIXED & changes.keys():
        raise Invalid(f"set at least one attribute, none of {', '.join(sorted(_FIXED))}")
    site, mailbox = _site(scenario, replica), _ad(tx, address)["address"]
    for name, value in changes.items():
        if not replicas.edit(tx, site, mailbox, name, value):
            raise Conflict(f"the 5.5 directory of {site} has no present object for {mailbox}")
    tx.event("mailflow", adc.EVENT_RUN, "Information", "ADC",
             f"{mailbox} changed in the 5.5 directory of {site}: "
             + ", ".join(f"{k}={v}" for k, v in changes.items()), category="ADC")
    return show(tx, scenario, mailbox)


def groups(conn: Read) -> list[dict[str, Any]]:
    return stored_adc.udgs(conn)


def group(conn: Read, scenario: Scenario, address: str) -> dict[str, Any]:
    """A group's UDG in AD and its 5.5 DL in each site."""
    found = [g for g in stored_adc.udgs(conn) if g["address"] == address.lower()]
    if not found:
        raise NotFound(f"no group {address!r}")
    return {**found[0], "dls": replicas.objects(conn, found[0]["address"])}


def _mixed(scenario: Scenario) -> None:
    if not scenario.mixed:
        raise Conflict("this organization has no ADC (no 5.5 server)")


def status(conn: Read, scenario: Scenario) -> dict[str, Any]:
    """The service, each agreement with its schedule, last and next run and pending changes."""
    _mixed(scenario)
    rows = []
    for a in stored_adc.agreements(conn):
        servers = [s.name for s in scenario.servers if s.site == a.site]
        rows.append({"name": a.name, "site": a.site, "direction": a.direction,
                     "schedule": "never" if a.schedule is None else a.schedule,
                     "last_run": a.last_run, "next_run": a.next_run,
                     "pending_changes": stored_adc.pending(conn, a.site, servers)})
    return {"running": stored_adc.running(conn), "agreements": rows,
            "next_cleanup": stored_adc.when(conn, stored_adc.NEXT_CLEANUP),
            "next_replication": stored_adc.when(conn, stored_adc.NEXT_REPLICATION),
            "stubs": replicas.stub_counts(conn)}


def run(tx: Tx, scenario: Scenario, name: str | None) -> dict[str, Any]:
    _mixed(scenario)
    try:
        ran = adc.run(tx, scenario, name)
    except KeyError:
        raise NotFound(f"no connection agreement {name!r}") from None
    return {"ran": ran, **status(tx, scenario)}


def stop(tx: Tx, scenario: Scenario) -> dict[str, Any]:
    _mixed(scenario)
    adc.stop(tx)
    return status(tx, scenario)


def start(tx: Tx, scenario: Scenario) -> dict[str, Any]:
    _mixed(scenario)
    adc.start(tx, scenario)
    return status(tx, scenario)
