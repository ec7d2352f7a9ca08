"""Scenario loader: the organization a lab emulates, described in TOML.

In: TOML text, a path to a ``.toml`` file, or a built-in name (``mixed-2003``,
``exchange-2010``; the files next to this module).
Out: a validated ``stores.topology.Scenario`` whose ``source`` is the raw TOML.
Anything wrong raises ``ScenarioError`` as ``"{file}: {key}: {problem}"``.
The format is documented in docs/scenarios.md.
"""

from __future__ import annotations

import ipaddress
import re
from importlib import resources
from pathlib import Path
from typing import Any, get_type_hints

from email_validator import EmailNotValidError, validate_email

from mailflow.scenarios import mixed, security
from mailflow.scenarios.databases import database_server, parse_databases
from mailflow.scenarios.table import MAX_FILE_BYTES, NAME_LENGTH, ScenarioError, Table, document
from mailflow.smtp import faultrules
from routing.transport import host_port
from stores.faults import FaultRule
from stores.topology import (
    CONNECTOR_LABELS,
    CONNECTOR_TYPES,
    DEFAULT_RANGES,
    ROLES,
    VERSIONS,
    ConnectorSpec,
    DatabaseSpec,
    Defaults,
    MailboxSpec,
    Scenario,
    Server,
    Version,
)

__all__ = ["ScenarioError", "builtin_names", "load", "parse"]

_DEFAULT_TYPES: dict[str, Any] = get_type_hints(Defaults)
# Limits that keep a lab's memory, disk and start-up time bounded (docs/scenarios.md).
MAX_MAILBOXES = 100_000  # individual and generated together
MAX_ITEMS = 100_000  # pre-existing items of one mailbox
MAX_TOTAL_ITEMS = 1_000_000  # of all mailboxes: a row each in the store
MAX_SERVERS = 50  # each one listens on a port
MAX_ENTRIES = 100  # domains, sites, relay networks, [[users]] entries
MAX_CONNECTORS = 1000  # connectors and RPC pairs
# Server names go into queue ids (smtp:<SERVER>) and URL paths, so keep them NetBIOS-like.
_SERVER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
# A DNS host name (an IP address is checked by ipaddress): what a hop connects to.
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"{_LABEL}(\.{_LABEL})*")
_TOP_KEYS = (
    "name",
    "organization",
    "sites",
    "servers",
    "connectors",
    "rpc",
    "mailboxes",
    "users",
    "defaults",
    "relay_networks",
    "smarthost",
    "smarthost_tls",
    "logins",
    "faults",
    "databases",
    "adc",
    "groups",
)


def builtin_names() -> list[str]:
    return sorted(
        entry.name.removesuffix(".toml")
        for entry in resources.files(__name__).iterdir()
        if entry.name.endswith(".toml")
    )


def load(name_or_path: str) -> Scenario:
    """Load a built-in scenario by name, or else a scenario file by path."""
    if name_or_path in builtin_names():
        text = resources.files(__name__).joinpath(f"{name_or_path}.toml").read_text("utf-8")
        return parse(text, f"builtin:{name_or_path}")
    try:
        with Path(name_or_path).open("rb") as file:  # at most one byte more than allowed
            text = file.read(MAX_FILE_BYTES + 1).decode("utf-8")
    except FileNotFoundError:
        builtins = ", ".join(builtin_names())
        raise ScenarioError(
            name_or_path, "-", f"no such file or built-in scenario (built-ins: {builtins})"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(name_or_path, "-", f"cannot read: {exc}") from None
    return parse(text, name_or_path)


def _address(table: Table, name: str, value: str) -> tuple[str, str]:
    """Normalised (address, domain); test_environment admits the RFC 2606 ``.test`` domains."""
    try:
        valid = validate_email(value, check_deliverability=False, test_environment=True)
    except EmailNotValidError as exc:
        raise table.error(name, f"invalid address {value!r}: {exc}") from None
    return valid.normalized.lower(), valid.domain.lower()


def _domain(table: Table, key: str, domain: str) -> str:
    """Normalised accepted domain, checked by the same rules as the addresses in it."""
    try:
        valid = validate_email(
            f"postmaster@{domain}", check_deliverability=False, test_environment=True
        )
    except EmailNotValidError as exc:
        raise table.error(key, f"invalid domain {domain!r}: {exc}") from None
    return valid.domain.lower()


def _find(names: dict[str, str], table: Table, key: str, value: str, what: str) -> str:
    """Canonical spelling of a site or server reference; names are case-insensitive."""
    try:
        return names[value.upper()]
    except KeyError:
        known = ", ".join(names.values()) or "none"
        raise table.error(key, f"unknown {what} {value!r} (known: {known})") from None


def parse(text: str, source: str) -> Scenario:
    """Parse and validate scenario TOML; ``source`` names it in errors (a path or builtin:NAME)."""
    top = Table(source, "", document(text, source), _TOP_KEYS)
    name = top.text("name")
    if "organization" not in top.data:
        raise top.error("organization", "required table is missing")
    org = top.table("organization", ("name", "domains"))
    organization = org.text("name")
    domains = [_domain(org, f"domains[{i}]", domain)
               for i, domain in enumerate(org.strings("domains", None, MAX_ENTRIES))]
    if not domains:
        raise org.error("domains", "at least one accepted domain is required")
    sites: dict[str, str] = {}
    for entry in top.tables("sites", ("name",), MAX_ENTRIES):
        site = entry.text("name", longest=NAME_LENGTH)
        if site.upper() in sites:
            raise entry.error("name", f"duplicate site {site!r}")
        sites[site.upper()] = site
    servers = _servers(top, sites)
    server_names = {server.name.upper(): server.name for server in servers}
    databases = parse_databases(top, servers)
    boxes = _mailboxes(top, domains, server_names, databases)
    mixed_mode = any(server.version is Version.V55 for server in servers)
    return Scenario(
        name=name,
        organization=organization,
        domains=tuple(domains),
        sites=tuple(sites.values()),
        servers=servers,
        connectors=_connectors(top, sites),
        rpc_allow=_rpc(top.table("rpc", ("allow",)), server_names),
        mailboxes=boxes,
        defaults=_defaults(top.table("defaults", tuple(DEFAULT_RANGES))),
        source=text,
        relay_networks=_relay_networks(top),
        smarthost=_smarthost(top),
        smarthost_tls=security.smarthost_tls(top),
        logins=security.logins(top),
        faults=_faults(top, tuple(server_names.values())),
        databases=databases,
        adc=mixed.adc(top, sites, mixed_mode),
        groups=mixed.groups(top, sites, boxes),
    )


def _faults(top: Table, servers: tuple[str, ...]) -> tuple[FaultRule, ...]:
    """The ``[[faults]]`` rules (docs/faults.md), checked as the API checks them."""
    rules = []
    for entry in top.tables("faults", faultrules.KEYS, MAX_ENTRIES):
        try:
            rules.append(faultrules.rule(entry.data, servers))
        except ValueError as exc:
            key, _, problem = str(exc).partition(": ")
            raise entry.error(key, problem) from None
    return tuple(rules)


def _smarthost(top: Table) -> str:
    """HOST:PORT of the outbound smarthost, or "" for none."""
    if "smarthost" not in top.data:
        return ""
    value = top.text("smarthost")
    try:
        host_port(value)
    except ValueError:
        raise top.error(
            "smarthost", f"{value!r} is not HOST:PORT, e.g. \"127.0.0.1:1025\""
        ) from None
    return value


def _relay_networks(top: Table) -> tuple[str, ...]:
    """Client networks that may relay, as canonical CIDR strings ("127.0.0.0/8")."""
    networks: dict[str, None] = {}
    for i, value in enumerate(top.strings("relay_networks", [], MAX_ENTRIES)):
        try:
            network = ipaddress.ip_network(value.strip())
        except ValueError as exc:
            raise top.error(
                f"relay_networks[{i}]", f"{value!r} is not a network such as \"127.0.0.0/8\""
                f" or an address ({exc})"
            ) from None
        networks[str(network)] = None
    return tuple(networks)


def _servers(top: Table, sites: dict[str, str]) -> tuple[Server, ...]:
    servers: dict[str, Server] = {}
    ports: dict[int, str] = {}
    keys = ("name", "version", "site", "smtp_port", "host", "roles", *security.SERVER_KEYS)
    for srv in top.tables("servers", keys, MAX_SERVERS):
        name = srv.text("name", longest=NAME_LENGTH)
        if not _SERVER_NAME.fullmatch(name):
            raise srv.error("name", f"{name!r}: use letters, digits, '-' and '_' only")
        if name.upper() in servers:
            raise srv.error("name", f"duplicate server {name!r}")
        # `version = 2003` parses as an integer and `5.5` as a float: say to quote it.
        version = srv.get("version", None, (str,), 'a quoted string such as "2003"')
        if version not in VERSIONS:
            expected = ", ".join(VERSIONS)
            raise srv.error("version", f"unknown version {version!r} (expected: {expected})")
        site = _find(sites, srv, "site", srv.text("site"), "site")
        port = srv.integer("smtp_port", 0, 0, 65535)  # 0: any free port
        if port in ports:
            raise srv.error("smtp_port", f"port {port} is already used by {ports[port]}")
        if port:  # 0 asks for a free port at start-up, so several servers may share it
            ports[port] = name
        servers[name.upper()] = Server(name=name, version=Version(version), site=site,
                                       smtp_port=port, roles=_roles(srv),
                                       security=security.server_security(srv),
                                       host=_hop_host(srv))
    if not servers:
        raise top.error("servers", "at least one server is required ([[servers]])")
    return tuple(servers.values())


def _hop_host(srv: Table) -> str:
    """``host``: a name or an IP address, without a port."""
    if "host" not in srv.data:
        return ""
    value = srv.text("host", longest=NAME_LENGTH)
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if not _HOST_NAME.fullmatch(value):
            raise srv.error("host", f"{value!r} is not a host name or an IP address") from None
    return value


def _roles(srv: Table) -> tuple[str, ...]:
    roles = srv.strings("roles", [], len(ROLES))
    for i, role in enumerate(roles):
        if role not in ROLES:
            raise srv.error(f"roles[{i}]", f"unknown role {role!r} (expected: {', '.join(ROLES)})")
    return tuple(dict.fromkeys(roles))


def _connectors(top: Table, sites: dict[str, str]) -> tuple[ConnectorSpec, ...]:
    connectors: dict[str, ConnectorSpec] = {}
    for con in top.tables("connectors", ("type", "sites", "cost", "name"), MAX_CONNECTORS):
        kind = con.text("type")
        if kind not in CONNECTOR_TYPES:
            expected = ", ".join(CONNECTOR_TYPES)
            raise con.error("type", f"unknown type {kind!r} (expected: {expected})")
        ends = con.strings("sites")
        if len(ends) != 2:
            raise con.error("sites", f"expected two sites, got {len(ends)}")
        a, b = (_find(sites, con, f"sites[{i}]", end, "site") for i, end in enumerate(ends))
        if a == b:
            raise con.error("sites", f"a connector joins two different sites, got {a!r} twice")
        # Connector names appear in queue ids (mta:x400:<CONNECTOR>), so they must be unique.
        name = con.text("name", f"{a}-{b} {CONNECTOR_LABELS[kind]}", NAME_LENGTH)
        if name.upper() in connectors:
            raise con.error("name", f"duplicate connector name {name!r}")
        cost = con.integer("cost", 1, 1, 100)  # Exchange's connector costs are 1..100
        connectors[name.upper()] = ConnectorSpec(kind, a, b, cost=cost, name=name)
    return tuple(connectors.values())


def _rpc(rpc: Table, servers: dict[str, str]) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    allowed: list[Any] = rpc.get("allow", [], (list,), "an array of server pairs")
    if len(allowed) > MAX_CONNECTORS:
        raise rpc.error("allow", f"at most {MAX_CONNECTORS} pairs, got {len(allowed)}")
    for i, pair in enumerate(allowed):
        key = f"allow[{i}]"
        if not (
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)
        ):
            raise rpc.error(key, 'expected a pair of server names, e.g. ["EX2003-A", "EX55-LON"]')
        a, b = (_find(servers, rpc, f"{key}[{j}]", p, "server") for j, p in enumerate(pair))
        if a == b:
            raise rpc.error(key, f"a server always reaches itself; got {a!r} twice")
        pairs.append((a, b))
    return tuple(pairs)


class _Mailboxes:
    """The mailboxes being defined, individual and generated, within the scenario's limits."""

    def __init__(self, domains: list[str]) -> None:
        self.domains = domains
        self.specs: dict[str, MailboxSpec] = {}
        self.defined_at: dict[str, str] = {}  # address -> key path, for duplicate errors
        self.items = 0

    def reserve(self, table: Table, key: str, count: int, items: int) -> None:
        """Refuse ``count`` more mailboxes of ``items`` items each beyond the limits."""
        if len(self.specs) + count > MAX_MAILBOXES:
            raise table.error(key, f"the scenario would have {len(self.specs) + count}"
                                   f" mailboxes; at most {MAX_MAILBOXES}")
        self.items += count * items
        if self.items > MAX_TOTAL_ITEMS:
            raise table.error("items", f"the mailboxes would hold {self.items} items;"
                                       f" at most {MAX_TOTAL_ITEMS} in all")

    def add(self, table: Table, key: str, raw: str, server: str, display: str, items: int,
            archive: bool = False, database: str = "") -> None:
        address, domain = _address(table, key, raw)
        if domain not in self.domains:
            accepted = ", ".join(self.domains)
            raise table.error(key, f"domain {domain!r} is not accepted (domains: {accepted})")
        if address in self.specs:
            raise table.error(key, f"duplicate address {address}"
                                   f" (also {self.defined_at[address]})")
        self.defined_at[address] = table.path(key)
        display = display or address.split("@")[0].capitalize()
        self.specs[address] = MailboxSpec(address, server, display, items, archive, database)


def _mailboxes(top: Table, domains: list[str], servers: dict[str, str],
               databases: tuple[DatabaseSpec, ...] = ()) -> tuple[MailboxSpec, ...]:
    boxes = _Mailboxes(domains)
    for box in top.tables("mailboxes", ("address", "server", "display_name", "items",
                                        "archive", "database"), MAX_MAILBOXES):
        # A mailbox in a DAG database lives on the server of its active copy (issue 19).
        database, server = (database_server(databases, box, "database")
                            if "database" in box.data else
                            ("", _find(servers, box, "server", box.text("server"), "server")))
        display = box.text("display_name") if "display_name" in box.data else ""
        items = box.integer("items", 0, 0, MAX_ITEMS)
        boxes.reserve(box, "address", 1, items)
        archive = box.data.get("archive", False)
        if not isinstance(archive, bool):
            raise box.error("archive", "expected true or false")
        boxes.add(box, "address", box.text("address"), server, display, items, archive,
                  database)

    for gen in top.tables("users", ("prefix", "count", "digits", "servers", "items"),
                          MAX_ENTRIES):
        prefix, digits = gen.text("prefix", "user", 32), gen.integer("digits", 3, 1, 9)
        count = gen.integer("count", 100, 1, MAX_MAILBOXES)
        items = gen.integer("items", 0, 0, MAX_ITEMS)
        boxes.reserve(gen, "count", count, items)
        names = gen.strings("servers", list(servers.values()), MAX_SERVERS)
        if not names:
            raise gen.error("servers", "at least one server is required")
        homes = [_find(servers, gen, f"servers[{i}]", n, "server") for i, n in enumerate(names)]
        for n in range(count):
            # Round-robin, so every server gets a share of the generated users.
            address = f"{prefix}{n + 1:0{digits}d}@{domains[0]}"
            boxes.add(gen, "prefix", address, homes[n % len(homes)], "", items)
    return tuple(boxes.specs.values())


def _defaults(table: Table) -> Defaults:
    """The ``[defaults]`` a scenario sets, each of its type and in ``DEFAULT_RANGES``."""
    values: dict[str, int | float] = {}
    for name in table.data:
        low, high = DEFAULT_RANGES[name]
        # Float fields (durations in seconds, rates) also take an integer.
        values[name] = table.number(name, _DEFAULT_TYPES[name] is int, low, high)
    return Defaults(**values)  # type: ignore[arg-type]
