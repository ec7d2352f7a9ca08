"""The Exchange 5.5 directory of each site, beside Active Directory (issue 17).

In: the scenario (seeded once), the directory side of moves, the ADC and 5.5
directory replication (``routing.adc``) and edits made "in the 5.5
Administrator". Out: what one site's 5.5 directory knows of an address
(``lookup``: present, a stub, or nothing), each object side by side in every
replica (``objects``), the members of a group as one replica lists them
(``group_members``, ``member``), and the counts the metrics and ``adc status`` show.

Active Directory is the ``mailboxes`` table (``stores.directory``); a 5.5
directory is the rows of ``ds55`` with its ``site``. Each row is one object by
its DN: the DN's site (``owner``) is the replica that is authoritative for it,
and 5.5 directory replication copies it to the other sites. SMTP addresses are
the same in every replica (the AD proxy table finds the object), a
simplification docs/mixed-mode-directory.md lists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NamedTuple

from stores.backend import Conn
from stores.topology import Scenario

AD = "AD"
PRESENT, STUB = "present", "stub"
# The EX5 value of msExchADCGlobalNames after an SP1 cross-site move (seed 004).
NM_MOVED_CROSS_SITE = "NM_MOVED_CROSS_SITE"


@dataclass(frozen=True)
class Found:
    """What one 5.5 directory knows of an address: its object (present or stub)."""

    mailbox: str
    server: str | None
    state: str
    in_transit: bool | None


def seed(conn: Conn, scenario: Scenario) -> None:
    """Every site's 5.5 directory as complete as AD (directory replication has run),
    with its 5.5 DLs; nothing outside mixed mode. Idempotent (an older data directory)."""
    if not scenario.mixed or conn.execute("SELECT 1 FROM ds55 LIMIT 1").fetchone():
        return
    servers = {s.name: s.site for s in scenario.servers}
    rows = conn.execute("SELECT address, server, legacy_dn, proxy_addresses FROM mailboxes")
    objects = [(r[0], r[1], r[2], r[3], servers[r[1]]) for r in rows]
    dls = {g.address: g for g in scenario.groups}
    for site in scenario.sites:
        conn.executemany(
            "INSERT OR IGNORE INTO ds55(site, dn, owner, mailbox, server, proxies)"
            " VALUES (?,?,?,?,?,?)",
            [(site, dn, owner, address, server, proxies)
             for address, server, dn, proxies, owner in objects])
        for group in dls.values():
            members = [dn for address, _, dn, _, _ in objects if address in group.members]
            members += [dl_dn(scenario, dls[m].site, m) for m in group.members if m in dls]
            conn.execute(
                "INSERT OR IGNORE INTO ds55(site, dn, owner, mailbox, kind, members)"
                " VALUES (?,?,?,?,'dl',?)",
                (site, dl_dn(scenario, group.site, group.address), group.site, group.address,
                 json.dumps(members)))
    member_of: dict[str, list[str]] = {}
    for group in dls.values():
        conn.execute("INSERT OR IGNORE INTO udgs(address, site, members) VALUES (?,?,?)",
                     (group.address, group.site, json.dumps(list(group.members))))
        for member in group.members:
            member_of.setdefault(member, []).append(dl_dn(scenario, group.site, group.address))
    conn.executemany("UPDATE ds55 SET member_of=? WHERE mailbox=? AND kind='mailbox'",
                     [(json.dumps(dns), member) for member, dns in member_of.items()])


def dl_dn(scenario: Scenario, site: str, address: str) -> str:
    return f"/o={scenario.organization}/ou={site}/cn=Distribution Lists/cn={address.split('@')[0]}"


def lookup(conn: Conn, site: str, address: str, *, store: str | None = None) -> Found | None:
    """Resolve an SMTP address through ``site``'s 5.5 directory: the present object if
    there is one, else its stub; with ``store``, that store's PR_IN_TRANSIT of it."""
    row = conn.execute(
        "SELECT d.mailbox, d.server, d.state, s.in_transit FROM proxy_addresses p"
        " JOIN ds55 d ON d.site = ? AND d.mailbox = p.mailbox AND d.kind = 'mailbox'"
        " LEFT JOIN store_mailboxes s ON s.server = ? AND s.mailbox = d.mailbox"
        " WHERE p.address = ? ORDER BY d.state = 'present' DESC LIMIT 1",
        (site, store, address.lower()),
    ).fetchone()
    if row is None:
        return None
    return Found(row[0], row[1], row[2], None if row[3] is None else bool(row[3]))


class Member(NamedTuple):
    """A DN a 5.5 DL lists, as one site's directory resolves it."""

    dn: str
    address: str  # the SMTP address of its object (in any site, when this one lacks it)
    kind: str  # "mailbox" or "dl"
    state: str  # "present", "stub", or "absent" in the reading site


def group_members(conn: Conn, replica: str, address: str) -> list[str] | None:
    """The members of group ``address`` in ``replica``: AD's UDG lists SMTP addresses, a
    site's 5.5 DL lists DNs. None when that replica has no such group."""
    row = conn.execute("SELECT members FROM udgs WHERE address=?", (address,)).fetchone() \
        if replica == AD else conn.execute(
            "SELECT members FROM ds55 WHERE site=? AND mailbox=? AND kind='dl'",
            (replica, address)).fetchone()
    return None if row is None else list(json.loads(row[0]))


def member(conn: Conn, site: str, dn: str) -> Member | None:
    """What ``site``'s 5.5 directory makes of the DL member ``dn``; None for a DN that no
    directory holds."""
    row = conn.execute(
        "SELECT mailbox, kind, CASE WHEN site=? THEN state ELSE 'absent' END FROM ds55"
        " WHERE dn=? ORDER BY site=? DESC LIMIT 1", (site, dn, site)).fetchone()
    return None if row is None else Member(dn, row[0], row[1], row[2])


def objects(conn: Conn, mailbox: str) -> list[dict[str, Any]]:
    """Every 5.5 object of ``mailbox`` (or of a DL's address), in every site."""
    rows = conn.execute(
        "SELECT site, dn, owner, kind, state, server, proxies, member_of, members, version,"
        " attributes, edited FROM ds55 WHERE mailbox=? ORDER BY site, dn", (mailbox,))
    return [{
        "replica": r[0], "legacy_exchange_dn": r[1], "owner": r[2], "kind": r[3],
        "state": r[4], "server": r[5], "proxy_addresses": json.loads(r[6]),
        "member_of": json.loads(r[7]), "members": json.loads(r[8]), "version": r[9],
        "attributes": json.loads(r[10]), "edited": bool(r[11]),
    } for r in rows]


def set_home(conn: Conn, site: str, dn: str, server: str) -> None:
    """The move's write of HomeMDB into ``site``'s 5.5 directory (intra-site move)."""
    conn.execute("UPDATE ds55 SET server=?, version=version+1 WHERE site=? AND dn=?",
                 (server, site, dn))


def make_stub(conn: Conn, site: str, dn: str) -> bool:
    """An SP1 cross-site move hides the source site's object: a stub that takes no mail."""
    cursor = conn.execute("UPDATE ds55 SET state='stub', version=version+1 WHERE site=?"
                          " AND dn=? AND state='present'", (site, dn))
    return bool(cursor.rowcount)


def edit(conn: Conn, site: str, mailbox: str, attribute: str, value: str) -> bool:
    """A change made on ``site``'s present object, as in the 5.5 Administrator; it waits
    for the ADC (``edited``), and the object's version it was made on carries the home
    server of that moment (``edited_server``: the first change's). False when that replica
    has no present object."""
    row = conn.execute("SELECT dn, attributes FROM ds55 WHERE site=? AND mailbox=?"
                       " AND state='present' AND kind='mailbox'", (site, mailbox)).fetchone()
    if row is None:
        return False
    attributes = json.loads(row[1])
    attributes[attribute] = value
    conn.execute("UPDATE ds55 SET attributes=?, edited=1, version=version+1, edited_server ="
                 " CASE WHEN edited=1 THEN edited_server ELSE server END WHERE site=? AND dn=?",
                 (json.dumps(attributes), site, row[0]))
    return True


def stubs(conn: Conn) -> list[tuple[str, str, str, list[str]]]:
    """Every stub in the site that owns it (replication removes its copies elsewhere):
    (site, DN, mailbox, memberOf)."""
    return [(r[0], r[1], r[2], json.loads(r[3])) for r in conn.execute(
        "SELECT site, dn, mailbox, member_of FROM ds55 WHERE state='stub' AND site=owner"
        " ORDER BY site, dn")]


def stub_counts(conn: Conn) -> dict[str, int]:
    """Stubs per site, for the ``mailflow_directory_stubs`` gauge."""
    return dict(conn.execute("SELECT site, COUNT(*) FROM ds55 WHERE state='stub' GROUP BY site"))


def delete(conn: Conn, site: str, dn: str) -> None:
    conn.execute("DELETE FROM ds55 WHERE site=? AND dn=?", (site, dn))


def set_member_of(conn: Conn, site: str, dn: str, member_of: list[str]) -> None:
    conn.execute("UPDATE ds55 SET member_of=? WHERE site=? AND dn=?",
                 (json.dumps(member_of), site, dn))


def rewrite_members(conn: Conn, dl: str, old: str, new: str) -> int:
    """Replace member ``old`` by ``new`` in DL ``dl`` in every replica; how many it changed."""
    changed = 0
    for site, members_json in conn.execute(
            "SELECT site, members FROM ds55 WHERE dn=? AND kind='dl'", (dl,)).fetchall():
        members = json.loads(members_json)
        if old in members:
            members = [new if m == old else m for m in members]
            conn.execute("UPDATE ds55 SET members=?, version=version+1 WHERE site=? AND dn=?",
                         (json.dumps(members), site, dl))
            changed += 1
    return changed
