"""Scenario loader: the organization a lab emulates, described in TOML.

In: TOML text, a path to a ``.toml`` file, or a built-in name (``mixed-2003``,
``exchange-2010``; the files next to this module).
Out: a validated ``stores.topology.Scenario`` whose ``source`` is the raw TOML.
Anything wrong raises ``ScenarioError`` as ``"{file}: {key}: {problem}"``.
The format is documented in docs/scenarios.md.
"""

from __future__ import annotations

import ipaddress
import math
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, get_type_hints

from email_validator import EmailNotValidError, validate_email

from routing.transport import host_port
from stores.topology import (
    CONNECTOR_LABELS,
    CONNECTOR_TYPES,
    VERSIONS,
    ConnectorSpec,
    Defaults,
    MailboxSpec,
    Scenario,
    Server,
    Version,
)

__all__ = ["ScenarioError", "builtin_names", "load", "parse"]

_DEFAULT_TYPES: dict[str, Any] = get_type_hints(Defaults)
# Server names go into queue ids (smtp:<SERVER>) and URL paths, so keep them NetBIOS-like.
_SERVER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
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
)


class ScenarioError(ValueError):
    """A scenario that cannot be loaded; names the file, the key path and the problem."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        super().__init__(f"{file}: {key}: {problem}")
        self.file = file
        self.key = key
        self.problem = problem


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
        text = Path(name_or_path).read_text(encoding="utf-8")
    except FileNotFoundError:
        builtins = ", ".join(builtin_names())
        raise ScenarioError(
            name_or_path, "-", f"no such file or built-in scenario (built-ins: {builtins})"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(name_or_path, "-", f"cannot read: {exc}") from None
    return parse(text, name_or_path)


def _kind(value: object) -> str:
    """TOML's name for a value's type, for error messages."""
    names = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array"}
    return "table" if isinstance(value, dict) else names.get(type(value), type(value).__name__)


class _Table:
    """One TOML table being read: rejects unknown keys and checks types, naming the key path."""

    def __init__(self, file: str, key: str, value: object, allowed: tuple[str, ...]) -> None:
        self.file, self.key = file, key
        if not isinstance(value, dict):
            raise ScenarioError(file, key or "-", f"expected a table, got {_kind(value)}")
        self.data: dict[str, Any] = value
        for name in value:
            if name not in allowed:
                expected = ", ".join(allowed)
                raise self.error(name, f"unknown key (expected one of: {expected})")

    def path(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def error(self, name: str, problem: str) -> ScenarioError:
        return ScenarioError(self.file, self.path(name), problem)

    def get(self, name: str, default: Any, kinds: tuple[type, ...], what: str) -> Any:
        if name not in self.data:
            if default is None:
                raise self.error(name, "required key is missing")
            return default
        value = self.data[name]
        # bool is an int subclass in Python, but `port = true` is a mistake in TOML.
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise self.error(name, f"expected {what}, got {_kind(value)}")
        return value

    def text(self, name: str, default: str | None = None) -> str:
        value: str = self.get(name, default, (str,), "a string")
        if not value.strip():
            raise self.error(name, "must not be empty")
        return value

    def integer(self, name: str, default: int | None = None, minimum: int = 1) -> int:
        value: int = self.get(name, default, (int,), "an integer")
        if value < minimum:
            raise self.error(name, f"must be at least {minimum}, got {value}")
        return value

    def strings(self, name: str, default: list[str] | None = None) -> list[str]:
        values: list[Any] = self.get(name, default, (list,), "an array of strings")
        for i, value in enumerate(values):
            if not isinstance(value, str):
                raise self.error(f"{name}[{i}]", f"expected a string, got {_kind(value)}")
        return values

    def table(self, name: str, allowed: tuple[str, ...]) -> _Table:
        return _Table(self.file, self.path(name), self.data.get(name, {}), allowed)

    def tables(self, name: str, allowed: tuple[str, ...]) -> list[_Table]:
        values = self.data.get(name, [])
        if not isinstance(values, list):
            raise self.error(name, f"expected an array of tables ([[{name}]]), got {_kind(values)}")
        path = self.path(name)
        return [_Table(self.file, f"{path}[{i}]", v, allowed) for i, v in enumerate(values)]


def _address(table: _Table, name: str, value: str) -> tuple[str, str]:
    """Normalised (address, domain); test_environment admits the RFC 2606 ``.test`` domains."""
    try:
        valid = validate_email(value, check_deliverability=False, test_environment=True)
    except EmailNotValidError as exc:
        raise table.error(name, f"invalid address {value!r}: {exc}") from None
    return valid.normalized.lower(), valid.domain.lower()


def _domain(table: _Table, key: str, domain: str) -> str:
    """Normalised accepted domain, checked by the same rules as the addresses in it."""
    try:
        valid = validate_email(
            f"postmaster@{domain}", check_deliverability=False, test_environment=True
        )
    except EmailNotValidError as exc:
        raise table.error(key, f"invalid domain {domain!r}: {exc}") from None
    return valid.domain.lower()


def _find(names: dict[str, str], table: _Table, key: str, value: str, what: str) -> str:
    """Canonical spelling of a site or server reference; names are case-insensitive."""
    try:
        return names[value.upper()]
    except KeyError:
        known = ", ".join(names.values()) or "none"
        raise table.error(key, f"unknown {what} {value!r} (known: {known})") from None


def parse(text: str, source: str) -> Scenario:
    """Parse and validate scenario TOML; ``source`` names it in errors (a path or builtin:NAME)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(source, "-", f"TOML syntax error: {exc}") from None
    top = _Table(source, "", data, _TOP_KEYS)
    name = top.text("name")
    if "organization" not in top.data:
        raise top.error("organization", "required table is missing")
    org = top.table("organization", ("name", "domains"))
    organization = org.text("name")
    domains = [
        _domain(org, f"domains[{i}]", domain) for i, domain in enumerate(org.strings("domains"))
    ]
    if not domains:
        raise org.error("domains", "at least one accepted domain is required")
    sites: dict[str, str] = {}
    for entry in top.tables("sites", ("name",)):
        site = entry.text("name")
        if site.upper() in sites:
            raise entry.error("name", f"duplicate site {site!r}")
        sites[site.upper()] = site
    servers = _servers(top, sites)
    server_names = {server.name.upper(): server.name for server in servers}
    return Scenario(
        name=name,
        organization=organization,
        domains=tuple(domains),
        sites=tuple(sites.values()),
        servers=servers,
        connectors=_connectors(top, sites),
        rpc_allow=_rpc(top.table("rpc", ("allow",)), server_names),
        mailboxes=_mailboxes(top, domains, server_names),
        defaults=_defaults(top.table("defaults", tuple(_DEFAULT_TYPES))),
        source=text,
        relay_networks=_relay_networks(top),
        smarthost=_smarthost(top),
    )


def _smarthost(top: _Table) -> str:
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


def _relay_networks(top: _Table) -> tuple[str, ...]:
    """Client networks that may relay, as canonical CIDR strings ("127.0.0.0/8")."""
    networks: dict[str, None] = {}
    for i, value in enumerate(top.strings("relay_networks", [])):
        try:
            network = ipaddress.ip_network(value.strip())
        except ValueError as exc:
            raise top.error(
                f"relay_networks[{i}]", f"{value!r} is not a network such as \"127.0.0.0/8\""
                f" or an address ({exc})"
            ) from None
        networks[str(network)] = None
    return tuple(networks)


def _servers(top: _Table, sites: dict[str, str]) -> tuple[Server, ...]:
    servers: dict[str, Server] = {}
    ports: dict[int, str] = {}
    for srv in top.tables("servers", ("name", "version", "site", "smtp_port")):
        name = srv.text("name")
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
        port = srv.integer("smtp_port", 0, minimum=0)
        if port > 65535:
            raise srv.error("smtp_port", f"must be 0 (any free port) or 1..65535, got {port}")
        if port in ports:
            raise srv.error("smtp_port", f"port {port} is already used by {ports[port]}")
        if port:  # 0 asks for a free port at start-up, so several servers may share it
            ports[port] = name
        servers[name.upper()] = Server(name=name, version=Version(version), site=site,
                                       smtp_port=port)
    if not servers:
        raise top.error("servers", "at least one server is required ([[servers]])")
    return tuple(servers.values())


def _connectors(top: _Table, sites: dict[str, str]) -> tuple[ConnectorSpec, ...]:
    connectors: dict[str, ConnectorSpec] = {}
    for con in top.tables("connectors", ("type", "sites", "cost", "name")):
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
        name = con.text("name", f"{a}-{b} {CONNECTOR_LABELS[kind]}")
        if name.upper() in connectors:
            raise con.error("name", f"duplicate connector name {name!r}")
        cost = con.integer("cost", 1)
        connectors[name.upper()] = ConnectorSpec(kind, a, b, cost=cost, name=name)
    return tuple(connectors.values())


def _rpc(rpc: _Table, servers: dict[str, str]) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    for i, pair in enumerate(rpc.get("allow", [], (list,), "an array of server pairs")):
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


def _mailboxes(top: _Table, domains: list[str], servers: dict[str, str]) -> tuple[MailboxSpec, ...]:
    mailboxes: dict[str, MailboxSpec] = {}
    defined_at: dict[str, str] = {}  # address -> key path that defined it, for duplicate errors

    def add(table: _Table, key: str, raw: str, server: str, display: str, items: int) -> None:
        address, domain = _address(table, key, raw)
        if domain not in domains:
            accepted = ", ".join(domains)
            raise table.error(key, f"domain {domain!r} is not accepted (domains: {accepted})")
        if address in mailboxes:
            raise table.error(key, f"duplicate address {address} (also {defined_at[address]})")
        defined_at[address] = table.path(key)
        display = display or address.split("@")[0].capitalize()
        mailboxes[address] = MailboxSpec(address, server, display, items)

    for box in top.tables("mailboxes", ("address", "server", "display_name", "items")):
        server = _find(servers, box, "server", box.text("server"), "server")
        display = box.text("display_name") if "display_name" in box.data else ""
        add(box, "address", box.text("address"), server, display, box.integer("items", 0, 0))

    for gen in top.tables("users", ("prefix", "count", "digits", "servers", "items")):
        prefix, digits = gen.text("prefix", "user"), gen.integer("digits", 3)
        count, items = gen.integer("count", 100), gen.integer("items", 0, minimum=0)
        names = gen.strings("servers", list(servers.values()))
        if not names:
            raise gen.error("servers", "at least one server is required")
        homes = [_find(servers, gen, f"servers[{i}]", n, "server") for i, n in enumerate(names)]
        for n in range(count):
            # Round-robin, so every server gets a share of the generated users.
            address = f"{prefix}{n + 1:0{digits}d}@{domains[0]}"
            add(gen, "prefix", address, homes[n % len(homes)], "", items)
    return tuple(mailboxes.values())


def _defaults(table: _Table) -> Defaults:
    values: dict[str, int | float] = {}
    for name in table.data:
        if _DEFAULT_TYPES[name] is int:
            value: int | float = table.get(name, None, (int,), "an integer")
        else:  # float fields (durations in seconds, rates) also take an integer
            value = table.get(name, None, (int, float), "a number")
        if not (value > 0 and math.isfinite(value)):
            raise table.error(name, f"must be a positive finite number, got {value}")
        values[name] = float(value) if _DEFAULT_TYPES[name] is float else value
    return Defaults(**values)  # type: ignore[arg-type]
