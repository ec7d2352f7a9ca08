"""Scenario tables of a mixed-mode directory: ``[adc]`` and ``[[groups]]`` (issue 17).

In: the scenario's top table, its sites, servers and mailboxes. Out: the
``AdcSpec`` (connection agreements per site: direction, schedule in simulated
seconds or "never"; the 5.5 NDR wording) and the ``GroupSpec``s (a UDG in AD
and a 5.5 DL owned by a site, with mailbox members). Errors are
``ScenarioError``s naming the key. A scenario with a 5.5 server and no ``[adc]``
gets one two-way agreement per site, every hour (docs/scenarios.md).
"""

from __future__ import annotations

from mailflow.scenarios.table import NAME_LENGTH, Table
from stores.topology import ADC_DIRECTIONS, AdcSpec, AgreementSpec, GroupSpec, MailboxSpec

MAX_GROUPS = 1000
MAX_MEMBERS = 10_000
_DAY = 86400.0


def _site(table: Table, key: str, sites: dict[str, str]) -> str:
    value = table.text(key)
    if value.upper() not in sites:
        raise table.error(key, f"unknown site {value!r} (known: {', '.join(sites.values())})")
    return sites[value.upper()]


def _schedule(table: Table) -> float | None:
    value = table.get("schedule", 3600, (int, float, str), 'seconds or "never"')
    if value == "never":
        return None
    if isinstance(value, str) or not 60 <= value <= 90 * _DAY:
        raise table.error("schedule", f'must be 60..7776000 seconds or "never", got {value!r}')
    return float(value)


def adc(top: Table, sites: dict[str, str], mixed: bool) -> AdcSpec | None:
    """The ADC of a mixed-mode scenario; None outside mixed mode."""
    if "adc" not in top.data:
        if not mixed:
            return None
        return AdcSpec(tuple(AgreementSpec(f"{s} CA", s) for s in sites.values()))
    table = top.table("adc", ("agreements", "ndr55_status", "ndr55_text"))
    if not mixed:
        raise top.error("adc", "an ADC needs a 5.5 server (mixed mode)")
    agreements: dict[str, AgreementSpec] = {}
    for entry in table.tables("agreements", ("name", "site", "direction", "schedule"), 100):
        site = _site(entry, "site", sites)
        name = entry.text("name", f"{site} CA", NAME_LENGTH)
        if name.upper() in agreements:
            raise entry.error("name", f"duplicate agreement {name!r}")
        direction = entry.text("direction", "both")
        if direction not in ADC_DIRECTIONS:
            raise entry.error("direction", f"expected one of {', '.join(ADC_DIRECTIONS)}")
        agreements[name.upper()] = AgreementSpec(name, site, direction, _schedule(entry))
    status = table.text("ndr55_status", "5.1.1", 9)
    text = table.text("ndr55_text", "The recipient name is not recognized")
    return AdcSpec(tuple(agreements.values()), status, text)


def groups(top: Table, sites: dict[str, str], mailboxes: tuple[MailboxSpec, ...]
           ) -> tuple[GroupSpec, ...]:
    """Distribution lists; a group's address may not be a mailbox's."""
    known = {m.address for m in mailboxes}
    found: dict[str, GroupSpec] = {}
    for entry in top.tables("groups", ("address", "site", "members"), MAX_GROUPS):
        address = entry.text("address").lower()
        if address in known or address in found:
            raise entry.error("address", f"duplicate address {address}")
        members = tuple(m.lower() for m in entry.strings("members", [], MAX_MEMBERS))
        for i, member in enumerate(members):
            if member not in known:
                raise entry.error(f"members[{i}]", f"unknown mailbox {member!r}")
        found[address] = GroupSpec(address, _site(entry, "site", sites), members)
    return tuple(found.values())
