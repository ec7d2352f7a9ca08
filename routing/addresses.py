"""Addresses as the SMTP endpoints check them: syntax, accepted domains, relaying.

In: an address from MAIL FROM or RCPT TO, the scenario, the known addresses and
the client's IP address. Out: the address's canonical form (``normalize``),
whether a sender is acceptable (``valid_sender``), and the ``Verdict`` on a
recipient (``check_recipient``, ``may_relay``). Pure functions, cached.
"""

from __future__ import annotations

import enum
import functools
import ipaddress

from email_validator import EmailNotValidError, validate_email

from stores.topology import Scenario


class Verdict(enum.Enum):
    OK = "ok"
    BAD_SYNTAX = "bad syntax"
    RELAY_DENIED = "relay denied"
    UNKNOWN_USER = "unknown user"


# Validation is a pure function of the address, and test traffic repeats a few addresses
# thousands of times: each is validated once, not at MAIL, RCPT and again when stored.
@functools.lru_cache(maxsize=4096)
def normalize(address: str, *, smtputf8: bool = False) -> str | None:
    """The canonical form of an address, or None when it is not a valid mailbox."""
    try:
        # test_environment admits the reserved .test domain the built-in labs use.
        checked = validate_email(
            address, check_deliverability=False, allow_smtputf8=smtputf8, test_environment=True
        )
    except EmailNotValidError:
        return None
    return str(checked.normalized).lower()


@functools.lru_cache(maxsize=4096)
def valid_sender(address: str) -> bool:
    """Senders are checked for syntax only: test tools send as root@<hostname> or @localhost."""
    local, _, domain = address.rpartition("@")
    if domain.lower() == "localhost":
        address = f"{local}@localhost.test"
    try:
        # test_environment: the organization's own .test domains are valid senders too.
        validate_email(address, check_deliverability=False, allow_smtputf8=True,
                       globally_deliverable=False, allow_domain_literal=True,
                       test_environment=True)
    except EmailNotValidError:
        return False
    return True


def check_recipient(
    scenario: Scenario, known: frozenset[str], address: str, peer: str = ""
) -> Verdict:
    """A recipient in an accepted domain must be a known address; any other domain is
    relaying, refused unless the client ``peer`` (an IP address) is in relay_networks."""
    canonical = normalize(address, smtputf8=True)
    if canonical is None:
        return Verdict.BAD_SYNTAX
    if not scenario.accepts_domain(canonical.rsplit("@", 1)[1]):
        return Verdict.OK if may_relay(scenario, peer) else Verdict.RELAY_DENIED
    return Verdict.OK if canonical in known else Verdict.UNKNOWN_USER


@functools.lru_cache(maxsize=16)
def _networks(specs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(spec) for spec in specs)


def may_relay(scenario: Scenario, peer: str) -> bool:
    """Whether a client at ``peer`` may relay: only from the scenario's relay_networks."""
    if not scenario.relay_networks:
        return False
    try:
        ip = ipaddress.ip_address(peer.split("%", 1)[0])  # no IPv6 zone
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in _networks(scenario.relay_networks))
