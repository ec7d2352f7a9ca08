"""The STARTTLS and AUTH keys of a scenario: per server, ``[[logins]]`` and ``smarthost_tls``.

In: the TOML tables of ``mailflow.scenarios`` (a ``[[servers]]`` entry, the top level).
Out: a ``stores.topology.SmtpSecurity`` per server, the logins a server with
``auth = "logins"`` accepts, and how the transport speaks to the smarthost; or
``ScenarioError`` naming the key. docs/tls-and-auth.md describes the keys.
"""

from __future__ import annotations

from mailflow.scenarios.table import NAME_LENGTH, Table
from stores.topology import AUTH_MODES, SMARTHOST_TLS, SmtpSecurity

# The keys of a [[servers]] entry read here.
SERVER_KEYS = ("require_tls", "auth", "auth_before_tls", "auth_required", "tls_cert", "tls_key")
MAX_LOGINS = 100
PASSWORD_LENGTH = 256


def _flag(table: Table, name: str) -> bool:
    value = table.data.get(name, False)
    if not isinstance(value, bool):
        raise table.error(name, "expected true or false")
    return value


def _choice(table: Table, name: str, default: str, choices: tuple[str, ...]) -> str:
    value = table.text(name, default)
    if value not in choices:
        raise table.error(name, f"unknown value {value!r} (expected: {', '.join(choices)})")
    return value


def server_security(srv: Table) -> SmtpSecurity:
    """The STARTTLS and AUTH settings of one ``[[servers]]`` entry."""
    cert = srv.text("tls_cert") if "tls_cert" in srv.data else ""
    key = srv.text("tls_key") if "tls_key" in srv.data else ""
    if bool(cert) != bool(key):
        raise srv.error("tls_key" if cert else "tls_cert",
                        "tls_cert and tls_key go together (PEM files of a certificate and its key)")
    security = SmtpSecurity(
        require_tls=_flag(srv, "require_tls"),
        auth=_choice(srv, "auth", "off", AUTH_MODES),
        auth_before_tls=_flag(srv, "auth_before_tls"),
        auth_required=_flag(srv, "auth_required"),
        tls_cert=cert,
        tls_key=key,
    )
    if security.auth_required and security.auth == "off":
        raise srv.error("auth_required", 'needs auth = "any" or "logins"')
    return security


def logins(top: Table) -> tuple[tuple[str, str], ...]:
    """The ``[[logins]]`` entries: (user, password), each user once."""
    found: dict[str, str] = {}
    for entry in top.tables("logins", ("user", "password"), MAX_LOGINS):
        user = entry.text("user", longest=NAME_LENGTH * 4)
        if user in found:
            raise entry.error("user", f"duplicate user {user!r}")
        found[user] = entry.text("password", longest=PASSWORD_LENGTH)
    return tuple(found.items())


def smarthost_tls(top: Table) -> str:
    return _choice(top, "smarthost_tls", "off", SMARTHOST_TLS)
