"""The directory: Active Directory and Exchange 5.5 DS objects of every mailbox.

In: the scenario (seeded once into the store) and move directory updates.
Out: the home server of an address (``lookup``) and each mailbox's
homeMDB, homeMTA, msExchHomeServerName, legacyExchangeDN and proxyAddresses.
In a mixed-mode organization each 5.5 site is an administrative group, so the
site name is the ``ou=`` of every DN.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from stores.backend import Conn
from stores.topology import Scenario, Server, Version

# Stripped when a mailbox moves from 2003 to an older server (seed 000, step 6).
WIRELESS_ATTRIBUTES = ("msExchOmaAdminWirelessEnable", "msExchOmaAdminExtendedSettings")


@dataclass(frozen=True)
class Home:
    address: str
    server: str
    # PR_IN_TRANSIT of the mailbox in the store ``lookup`` was asked about; None when that
    # store does not hold it (or none was asked about).
    in_transit: bool | None = None


def _domain_dn(scenario: Scenario) -> str:
    return ",".join(f"DC={part}" for part in scenario.domains[0].split("."))


def _server_dn55(scenario: Scenario, server: Server) -> str:
    org, site = scenario.organization, server.site
    return f"/o={org}/ou={site}/cn=Configuration/cn=Servers/cn={server.name}"


# The last RDN of a 5.5 homeMDB: the server's one Private Information Store.
PRIVATE_MDB_55 = "/cn=Microsoft Private MDB"


def home_attributes(scenario: Scenario, server: Server) -> dict[str, str]:
    """homeMDB, homeMTA and msExchHomeServerName of a mailbox homed on ``server``.

    5.5 servers are named in 5.5 DS form (HomeMDB, HomeMTA); 2000 and later in AD form.
    """
    home_server_name = _server_dn55(scenario, server)
    if server.version is Version.V55:
        return {
            "home_mdb": f"{home_server_name}{PRIVATE_MDB_55}",
            "home_mta": f"{home_server_name}/cn=Microsoft MTA",
            "home_server_name": home_server_name,
        }
    config = (
        f"CN=Servers,CN={server.site},CN=Administrative Groups,CN={scenario.organization},"
        f"CN=Microsoft Exchange,CN=Services,CN=Configuration,{_domain_dn(scenario)}"
    )
    return {
        "home_mdb": f"CN=Mailbox Store ({server.name}),CN=First Storage Group,"
        f"CN=InformationStore,CN={server.name},{config}",
        "home_mta": f"CN=Microsoft MTA,CN={server.name},{config}",
        "home_server_name": home_server_name,
    }


def legacy_dn(scenario: Scenario, site: str, alias: str) -> str:
    return f"/o={scenario.organization}/ou={site}/cn=Recipients/cn={alias}"


def seed(conn: Conn, scenario: Scenario) -> None:
    """Create every mailbox object of the scenario (first start of a data directory)."""
    for spec in scenario.mailboxes:
        server = scenario.server(spec.server)
        alias = spec.address.split("@", 1)[0]
        proxies = [f"SMTP:{spec.address}"] + [
            f"smtp:{alias}@{domain}" for domain in scenario.domains[1:]
        ]
        proxies.append(f"X400:c=US;a= ;p={scenario.organization};o={server.site};s={alias};")
        attributes: dict[str, Any] = {"mailNickname": alias}
        if server.version is Version.V2003:
            attributes.update({WIRELESS_ATTRIBUTES[0]: 0, WIRELESS_ATTRIBUTES[1]: ""})
        home = home_attributes(scenario, server)
        conn.execute(
            "INSERT INTO mailboxes(address, display_name, server, legacy_dn, home_mdb, home_mta,"
            " home_server_name, proxy_addresses, attributes) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                spec.address,
                spec.display_name,
                server.name,
                legacy_dn(scenario, server.site, alias),
                home["home_mdb"],
                home["home_mta"],
                home["home_server_name"],
                json.dumps(proxies),
                json.dumps(attributes),
            ),
        )
        for proxy in proxies:
            kind, _, value = proxy.partition(":")
            if kind.lower() == "smtp":
                conn.execute(
                    "INSERT INTO proxy_addresses(address, mailbox) VALUES (?, ?)",
                    (value.lower(), spec.address),
                )


def lookup(conn: Conn, address: str, *, store: str | None = None) -> Home | None:
    """Resolve an SMTP address (primary or proxy) to its mailbox and home server; with
    ``store``, also read the mailbox's PR_IN_TRANSIT flag in that server's store, in the
    same query (the store driver's question when it delivers there)."""
    row = conn.execute(
        "SELECT m.address, m.server, s.in_transit FROM proxy_addresses p JOIN mailboxes m"
        " ON m.address = p.mailbox LEFT JOIN store_mailboxes s ON s.server = ?"
        " AND s.mailbox = m.address WHERE p.address = ?",
        (store, address.lower()),
    ).fetchone()
    if row is None:
        return None
    return Home(row[0], row[1], None if row[2] is None else bool(row[2]))


def smtp_addresses(conn: Conn) -> frozenset[str]:
    """Every address RCPT TO accepts: mailboxes' proxies, and groups (UDGs, 5.5 DLs)."""
    return frozenset(r[0] for r in conn.execute(
        "SELECT address FROM proxy_addresses UNION SELECT address FROM udgs"
        " UNION SELECT mailbox FROM ds55 WHERE kind='dl'"))


def rehome(conn: Conn, scenario: Scenario, address: str, target: Server) -> None:
    """The directory update of a completed move (seed 000, step 6).

    A move to another site (administrative group) also gets a legacyExchangeDN
    there and keeps the old one as an X500 proxy address (seed 004).
    """
    row = conn.execute(
        "SELECT server, legacy_dn, proxy_addresses, attributes FROM mailboxes WHERE address=?",
        (address,),
    ).fetchone()
    attributes = json.loads(row["attributes"])
    if target.version.legacy_mta:
        for name in WIRELESS_ATTRIBUTES:
            attributes.pop(name, None)
    legacy, proxies = row["legacy_dn"], json.loads(row["proxy_addresses"])
    if scenario.server(row["server"]).site != target.site:
        proxies.append(f"X500:{legacy}")
        legacy = legacy_dn(scenario, target.site, legacy.rsplit("/cn=", 1)[1])
    home = home_attributes(scenario, target)
    conn.execute(
        "UPDATE mailboxes SET server=?, home_mdb=?, home_mta=?, home_server_name=?, legacy_dn=?,"
        " proxy_addresses=?, attributes=? WHERE address=?",
        (target.name, home["home_mdb"], home["home_mta"], home["home_server_name"], legacy,
         json.dumps(proxies), json.dumps(attributes), address),
    )


def legacy_exchange_dn(conn: Conn, address: str) -> str:
    return str(conn.execute("SELECT legacy_dn FROM mailboxes WHERE address=?",
                            (address,)).fetchone()[0])


def x500_proxies(conn: Conn, address: str) -> list[str]:
    """The X500 proxy addresses of a mailbox (its former legacyExchangeDNs), oldest first."""
    row = conn.execute("SELECT proxy_addresses FROM mailboxes WHERE address=?",
                       (address,)).fetchone()
    return [p[5:] for p in json.loads(row[0]) if p.upper().startswith("X500:")]


def set_attributes(conn: Conn, address: str, updates: dict[str, str]) -> None:
    """Set attributes of a mailbox's AD object (msExchADCGlobalNames, ADCDoNotReplicate, or
    what the ADC carries over from the 5.5 side)."""
    if not updates:
        return
    row = conn.execute("SELECT attributes FROM mailboxes WHERE address=?", (address,)).fetchone()
    attributes = {**json.loads(row[0]), **updates}
    conn.execute("UPDATE mailboxes SET attributes=? WHERE address=?",
                 (json.dumps(attributes), address))


def find(conn: Conn, address: str) -> dict[str, Any] | None:
    """The AD object of an SMTP address (primary or proxy), as the API shows it."""
    row = conn.execute("SELECT * FROM mailboxes WHERE address = (SELECT mailbox FROM"
                       " proxy_addresses WHERE address=?)", (address.lower(),)).fetchone()
    return None if row is None else describe(row)


def describe(row: Any) -> dict[str, Any]:
    """A mailboxes row as the API shows it."""
    return {
        "address": row["address"],
        "display_name": row["display_name"],
        "server": row["server"],
        "home_mdb": row["home_mdb"],
        "home_mta": row["home_mta"],
        "home_server_name": row["home_server_name"],
        "legacy_exchange_dn": row["legacy_dn"],
        "proxy_addresses": json.loads(row["proxy_addresses"]),
        "attributes": json.loads(row["attributes"]),
    }
