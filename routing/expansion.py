"""Mail to a list: a group address expanded by the server that resolves it (issue 17).

In: a recipient address and the server it is at. Out: None when the replica
that server reads (``routing.resolve.replica``) holds no group of that address;
else the ``Expansion``: every member once, groups within the group expanded
too (each group once, at most ``MAX_DEPTH`` levels deep), and for each member
whether that replica resolves it. A 2000/2003+ server reads the AD universal
distribution group, whose members are SMTP addresses: each is then routed as
any recipient. A 5.5 server reads its site's 5.5 DL, whose members are DNs: a
DN that this directory knows only as a stub (a cross-site move the ADC has
not cleaned up yet, seed 004) or not at all is not recognized there, the
KB 841659 NDR; after the clean-up rewrote the member to the new DN, it is.
The categorizer makes one pair per member and routes or NDRs it.
"""

from __future__ import annotations

from dataclasses import dataclass

from routing import resolve
from stores import replicas
from stores.backend import Tx
from stores.replicas import AD, PRESENT
from stores.topology import Scenario, Server

# Groups within groups are expanded this deep; deeper ones are left out, and traced.
MAX_DEPTH = 8


@dataclass(frozen=True)
class Member:
    address: str
    group: str  # the group that listed it
    unknown: str | None = None  # why the reading 5.5 directory does not resolve it


@dataclass(frozen=True)
class Expansion:
    replica: str
    members: tuple[Member, ...]
    groups: int  # how many groups were expanded, this one included
    too_deep: tuple[str, ...]  # groups nested deeper than MAX_DEPTH, left out

    def describe(self, address: str, count: int) -> str:
        where = "AD universal distribution group" if self.replica == AD \
            else f"site {self.replica} 5.5 DL"
        text = f"{where} {address}: {count} members"
        if self.groups > 1:
            text += f" (through {self.groups - 1} nested groups)"
        if self.too_deep:
            text += f"; nested deeper than {MAX_DEPTH}, left out: {', '.join(self.too_deep)}"
        return text


def expand(tx: Tx, scenario: Scenario, address: str, at: Server) -> Expansion | None:
    """The members of group ``address`` as the replica ``at`` reads lists them."""
    replica = resolve.replica(scenario, at)
    if replicas.group_members(tx, replica, address) is None:
        return None
    members: dict[str, Member] = {}
    seen, too_deep = {address}, []
    level = [address]
    for depth in range(MAX_DEPTH + 1):
        nested: list[str] = []
        for group in level:
            if depth == MAX_DEPTH:
                too_deep.append(group)
                continue
            for found in _listed(tx, replica, group):
                if found is None:  # a DN that no directory holds: nobody to send to
                    continue
                if isinstance(found, str):  # a group: expanded at the next level, once
                    if found not in seen:
                        seen.add(found)
                        nested.append(found)
                    continue
                members.setdefault(found.address, found)
        level = nested
    return Expansion(replica, tuple(members.values()), len(seen) - len(too_deep),
                     tuple(too_deep))


def _listed(tx: Tx, replica: str, group: str) -> list[Member | str | None]:
    """Each entry of ``group`` in ``replica``: a member, or the address of a nested group
    (a str), or None for a DN no directory holds."""
    entries = replicas.group_members(tx, replica, group) or []
    if replica == AD:
        return [entry if replicas.group_members(tx, AD, entry) is not None
                else Member(entry, group) for entry in entries]
    listed: list[Member | str | None] = []
    for dn in entries:
        found = replicas.member(tx, replica, dn)
        if found is None or found.kind == "dl":
            listed.append(None if found is None else found.address)
        else:
            unknown = None if found.state == PRESENT else f"member {dn} {found.state}"
            listed.append(Member(found.address, group, unknown))
    return listed
