"""The ADC's state and its writes between Active Directory and the 5.5 directories (issue 17).

In: the scenario's connection agreements (seeded once), runs of an agreement,
of the clean-up and of 5.5 directory replication (``routing.adc`` decides
when). Out: agreement rows (schedule, last and next run), whether the ADC
service runs, what an agreement would change (``pending``), and the set-based
copies that replicate a site's own objects to the other sites.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from stores import meta, services
from stores.backend import Conn
from stores.topology import Scenario

# The ADC is a service of the organization, not of one emulated server.
ADC_HOST, ADC_SERVICE = "*", "adc"
NEXT_CLEANUP, NEXT_REPLICATION = "adc_next_cleanup", "ds55_next_replication"


@dataclass(frozen=True)
class Agreement:
    name: str
    site: str
    direction: str
    schedule: float | None  # None: "never"
    last_run: float | None
    next_run: float | None


def seed(conn: Conn, scenario: Scenario, now: float) -> None:
    """The agreements of the scenario, each first due one schedule from now; idempotent."""
    if scenario.adc is None:
        return
    conn.executemany(
        "INSERT OR IGNORE INTO adc_agreements(name, site, direction, schedule, next_run)"
        " VALUES (?,?,?,?,?)",
        [(a.name, a.site, a.direction, a.schedule,
          None if a.schedule is None else now + a.schedule) for a in scenario.adc.agreements])
    for key, seconds in ((NEXT_CLEANUP, scenario.defaults.adc_cleanup_seconds),
                         (NEXT_REPLICATION, scenario.defaults.ds_replication_seconds)):
        if meta.get(conn, key) is None:
            meta.put(conn, key, repr(now + seconds))


def agreements(conn: Conn) -> list[Agreement]:
    return [Agreement(*row) for row in conn.execute(
        "SELECT name, site, direction, schedule, last_run, next_run FROM adc_agreements"
        " ORDER BY name")]


def ran(conn: Conn, name: str, now: float, schedule: float | None, running: bool) -> None:
    """An agreement ran at ``now``: its next run one schedule on (none if stopped or never)."""
    next_run = None if schedule is None or not running else now + schedule
    conn.execute("UPDATE adc_agreements SET last_run=?, next_run=? WHERE name=?",
                 (now, next_run, name))


def reschedule(conn: Conn, now: float, running: bool) -> None:
    """Stopped: nothing is due. Started: every scheduled agreement one schedule from now."""
    if running:
        conn.execute("UPDATE adc_agreements SET next_run = ? + schedule", (now,))
    else:
        conn.execute("UPDATE adc_agreements SET next_run = NULL")


def running(conn: Conn) -> bool:
    return services.running(conn, ADC_HOST, ADC_SERVICE)


def set_running(conn: Conn, flag: bool) -> None:
    services.set_running(conn, ADC_HOST, ADC_SERVICE, flag)


def when(conn: Conn, key: str) -> float | None:
    value = meta.get(conn, key)
    return None if value is None else float(value)


def set_when(conn: Conn, key: str, at: float) -> None:
    meta.put(conn, key, repr(at))


def next_due(conn: Conn, after: float) -> float | None:
    """The first agreement run, clean-up or replication after ``after``."""
    row = conn.execute("SELECT MIN(next_run) FROM adc_agreements WHERE next_run > ?",
                       (after,)).fetchone()
    times = [t for t in (row[0], when(conn, NEXT_REPLICATION)) if t is not None and t > after]
    cleanup = when(conn, NEXT_CLEANUP)
    if cleanup is not None and cleanup > after and running(conn):
        times.append(cleanup)
    return min(times, default=None)


def due(conn: Conn, now: float) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT name FROM adc_agreements WHERE next_run <= ? ORDER BY name", (now,))]


def _in(servers: list[str]) -> str:
    return ",".join("?" * len(servers)) or "NULL"


def missing_in_55(conn: Conn, site: str, servers: list[str]
                  ) -> list[tuple[str, str, str, str]]:
    """AD mailboxes homed in ``site`` whose 5.5 object there is missing or names another
    home (an unedited one): (address, server, legacyExchangeDN, proxies)."""
    return [tuple(r) for r in conn.execute(
        "SELECT m.address, m.server, m.legacy_dn, m.proxy_addresses FROM mailboxes m"
        " LEFT JOIN ds55 d ON d.site=? AND d.dn=m.legacy_dn AND d.state='present'"
        f" WHERE m.server IN ({_in(servers)}) AND (d.dn IS NULL OR"
        " (d.server != m.server AND d.edited=0))", (site, *servers))]


def put_object(conn: Conn, site: str, address: str, server: str, dn: str, proxies: str) -> None:
    """The agreement writes the AD object into ``site``'s 5.5 directory (owned by it)."""
    conn.execute(
        "INSERT INTO ds55(site, dn, owner, mailbox, server, proxies) VALUES (?,?,?,?,?,?)"
        " ON CONFLICT(site, dn) DO UPDATE SET server=excluded.server, state='present',"
        " version=ds55.version+1", (site, dn, site, address, server, proxies))


def edited(conn: Conn, site: str) -> list[tuple[str, str, str, dict[str, str]]]:
    """Changes made on ``site``'s 5.5 side not yet replicated to AD: (DN, mailbox, the home
    server the changed version carries, attributes)."""
    return [(r[0], r[1], r[2], json.loads(r[3])) for r in conn.execute(
        "SELECT dn, mailbox, edited_server, attributes FROM ds55 WHERE site=? AND edited=1"
        " AND state='present'", (site,))]


def resolve_edit(conn: Conn, site: str, dn: str, server: str | None) -> None:
    """The changed 5.5 version won: its home server stays, and nothing is pending."""
    conn.execute("UPDATE ds55 SET edited=0, edited_server=NULL, server=COALESCE(?, server)"
                 " WHERE site=? AND dn=?", (server, site, dn))


def pending(conn: Conn, site: str, servers: list[str]) -> int:
    """What the agreement of ``site`` would replicate now, both ways, and bumped UDGs."""
    edits = conn.execute("SELECT COUNT(*) FROM ds55 WHERE site=? AND edited=1",
                         (site,)).fetchone()[0]
    udgs = conn.execute("SELECT COUNT(*) FROM udgs WHERE site=? AND version > "
                        "replicated_version", (site,)).fetchone()[0]
    return len(missing_in_55(conn, site, servers)) + int(edits) + int(udgs)


def bump_udgs(conn: Conn, member: str) -> list[str]:
    """replicatedObjectVersion + 1 on every UDG with ``member`` (seed 004); their addresses."""
    bumped = [r[0] for r in conn.execute("SELECT address, members FROM udgs")
              if member in json.loads(r[1])]
    conn.executemany("UPDATE udgs SET version=version+1 WHERE address=?",
                     [(a,) for a in bumped])
    return bumped


def udgs(conn: Conn) -> list[dict[str, Any]]:
    return [{"address": r[0], "site": r[1], "members": json.loads(r[2]),
             "replicated_object_version": r[3], "replicated_to_55": r[4]}
            for r in conn.execute("SELECT address, site, members, version, replicated_version"
                                  " FROM udgs ORDER BY address")]


def replicate_udgs(conn: Conn) -> list[str]:
    """Bumped UDGs re-replicated to the 5.5 side; their addresses."""
    bumped = [r[0] for r in conn.execute(
        "SELECT address FROM udgs WHERE version > replicated_version ORDER BY address")]
    conn.execute("UPDATE udgs SET replicated_version=version")
    return bumped


def replicate_sites(conn: Conn, sites: tuple[str, ...]) -> None:
    """5.5 directory replication: each site's own objects copied to every other site (an
    edit waits for the ADC where it was made, not in the copies), removals carried too."""
    for owner in sites:
        for site in sites:
            if site == owner:
                continue
            conn.execute(
                "DELETE FROM ds55 WHERE site=? AND owner=? AND dn NOT IN"
                " (SELECT dn FROM ds55 WHERE site=? AND owner=?)", (site, owner, owner, owner))
            conn.execute(
                "INSERT INTO ds55(site, dn, owner, mailbox, kind, state, server, proxies,"
                " member_of, members, version, attributes, edited) SELECT ?, dn, owner,"
                " mailbox, kind, state, server, proxies, member_of, members, version,"
                " attributes, 0 FROM ds55 WHERE site=? AND owner=? ON CONFLICT(site, dn) DO"
                " UPDATE SET owner=excluded.owner, mailbox=excluded.mailbox,"
                " kind=excluded.kind, state=excluded.state, server=excluded.server,"
                " proxies=excluded.proxies, member_of=excluded.member_of,"
                " members=excluded.members, version=excluded.version,"
                " attributes=excluded.attributes, edited=0, edited_server=NULL",
                (site, owner, owner))
