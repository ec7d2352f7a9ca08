"""Which directory resolves a recipient: the replica of the server that handles the mail.

In: a recipient address and the server it is at. Out: its ``Home`` read from
that server's replica, or ``NotKnown`` when the replica is a 5.5 directory
that knows the address only as a stub, or not at all (KB 841659, seed 003),
or None for an address AD does not know. A 5.5 server reads its site's 5.5
directory; 2000 and later read Active Directory (exchange-facts.md,
"Mixed-mode directory"). Outside mixed mode every server reads AD, with the
one query it always ran.
"""

from __future__ import annotations

from dataclasses import dataclass

from routing import dsn
from stores import directory, replicas
from stores import mailbox as stores_mailbox
from stores.backend import Tx
from stores.directory import Home
from stores.replicas import AD, PRESENT
from stores.topology import Scenario, Server, Version

# mailflow event: a 2000/2003 store created a mailbox on its first delivery (issue 17).
EVENT_CREATED_ON_DELIVERY = 1104


@dataclass(frozen=True)
class NotKnown:
    """The reading 5.5 directory has only a stub of the recipient, or nothing."""

    replica: str
    state: str  # "stub" or "absent"


def replica(scenario: Scenario, at: Server) -> str:
    """The replica ``at`` reads: its site's 5.5 directory on a 5.5 server in mixed mode."""
    return at.site if at.version is Version.V55 and scenario.mixed else AD


def lookup(tx: Tx, scenario: Scenario, address: str, at: Server) -> Home | NotKnown | None:
    """Resolve ``address`` where ``at`` resolves it, with ``at``'s PR_IN_TRANSIT of it."""
    name = replica(scenario, at)
    if name == AD:
        return directory.lookup(tx, address, store=at.name)
    found = replicas.lookup(tx, name, address, store=at.name)
    if found is not None and found.state == PRESENT and found.server is not None:
        return Home(found.mailbox, found.server, found.in_transit)
    if not scenario.accepts_domain(address.rpartition("@")[2]):
        return None
    return NotKnown(name, "absent" if found is None else found.state)


def not_recognized(scenario: Scenario) -> dsn.Failure:
    """A 5.5 server's NDR for a recipient its directory does not resolve (KB 841659; the
    wording is unconfirmed: the scenario's ``[adc]`` ndr55_status and ndr55_text)."""
    status = scenario.adc.ndr55_status if scenario.adc else "5.1.1"
    text = scenario.adc.ndr55_text if scenario.adc else "The recipient name is not recognized"
    return dsn.Failure(status, f"X-Exchange-MTA; {text}", text, "unknown")


# The MTA gives a message up after it reached the same server this often (issue 17).
LOOP_LIMIT = 3


def loop_detected() -> dsn.Failure:
    """RFC 3463 X.4.6 "Routing loop detected"; Exchange's wording is unconfirmed."""
    return dsn.Failure("5.4.6", "X-Exchange-MTA; routing loop detected",
                       "A routing loop was detected: the directories disagree on the"
                       " recipient's home.", "loop")


def first_delivery(tx: Tx, scenario: Scenario, at: Server, home: Home) -> Home:
    """A 2000/2003 store creates the mailbox of an AD user whose homeMDB names it on its
    first delivery (exchange-facts.md; unconfirmed trigger): how a split mailbox gets mail."""
    if (home.in_transit is not None or not scenario.mixed or home.server != at.name
            or at.version not in (Version.V2000, Version.V2003)):
        return home
    stores_mailbox.create(tx, at.name, home.address, in_transit=False)
    tx.event("mailflow", EVENT_CREATED_ON_DELIVERY, "Warning", at.name,
             f"The store created a new mailbox for {home.address} on its first delivery:"
             " homeMDB names this server (KB 299473 split mailbox if its data is elsewhere).")
    return Home(home.address, home.server, False)
