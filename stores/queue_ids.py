"""Queue ids: the names of every queue in the lab, with builders and a parser.

In: a server, connector or queue id string. Out: the id (``local``,
``smtp:EX2003-B``, ``mta:x400:<CONNECTOR>`` ...) or its parsed kind and target.
The same ids are the ``queue`` column of pairs and the ``queue`` label of the
metrics, so a ``QueueId`` is a plain ``str`` to SQL, JSON and Prometheus.
"""

from __future__ import annotations

import enum
from typing import NamedTuple, NewType

QueueId = NewType("QueueId", str)


class Fixed(enum.StrEnum):
    """The queues every server may have, named without a destination."""

    LOCAL = "local"  # Local delivery
    DEFERRED = "deferred"  # Messages queued for deferred delivery (2003)
    UNREACHABLE = "unreachable"  # Messages with an unreachable destination
    HOLDING = "holding"  # the 5.5/2000 store's InTransitFolder
    SMARTHOST = "smarthost"  # mail for domains outside the organization


LOCAL = QueueId(Fixed.LOCAL.value)
DEFERRED = QueueId(Fixed.DEFERRED.value)
UNREACHABLE = QueueId(Fixed.UNREACHABLE.value)
HOLDING = QueueId(Fixed.HOLDING.value)
SMARTHOST = QueueId(Fixed.SMARTHOST.value)

LINK_PREFIX = "smtp:"
MTA_PREFIX = "mta:"
X400_PREFIX = "mta:x400:"
# 2007/2010 transport: the mailbox delivery queue of one database (DeliveryType MapiDelivery,
# NextHopDomain the database; exchange-facts.md, "Exchange 2007 / 2010"), ``mapi:<DATABASE>``.
MAPI_PREFIX = "mapi:"


class Kind(enum.StrEnum):
    LOCAL = "local"
    DEFERRED = "deferred"
    UNREACHABLE = "unreachable"
    HOLDING = "holding"
    SMARTHOST = "smarthost"
    LINK = "link"  # SMTP link queue to another server
    MTA = "mta"  # MTA RPC queue to another server
    X400 = "x400"  # MTA queue of an X.400 connector
    MAPI = "mapi"  # 2007/2010 mailbox delivery queue of a database


class Parsed(NamedTuple):
    kind: Kind
    target: str  # the destination server or connector; "" for fixed queues


def link(server: str) -> QueueId:
    return QueueId(f"{LINK_PREFIX}{server}")


def mta(server: str) -> QueueId:
    return QueueId(f"{MTA_PREFIX}{server}")


def x400(connector: str) -> QueueId:
    return QueueId(f"{X400_PREFIX}{connector}")


def mapi_delivery(database: str) -> QueueId:
    return QueueId(f"{MAPI_PREFIX}{database}")


def is_mapi(queue: str) -> bool:
    return queue.startswith(MAPI_PREFIX)


def is_parking(queue: str) -> bool:
    """A queue where the store's in-transit refusals wait: 2003's ``deferred`` or a 2007/2010
    mailbox delivery queue (``holding`` is the 5.5/2000 store's, not transport's)."""
    return queue == DEFERRED or is_mapi(queue)


def parse(queue: str) -> Parsed:
    """The kind and destination of a queue id; ``ValueError`` for one that is not."""
    if queue in Fixed.__members__.values():
        return Parsed(Kind(queue), "")
    for prefix, kind in ((X400_PREFIX, Kind.X400), (MTA_PREFIX, Kind.MTA),
                         (LINK_PREFIX, Kind.LINK), (MAPI_PREFIX, Kind.MAPI)):
        if queue.startswith(prefix) and len(queue) > len(prefix):
            return Parsed(kind, queue[len(prefix):])
    raise ValueError(f"unknown queue id {queue!r}")


def is_link(queue: str) -> bool:
    return queue.startswith(LINK_PREFIX)


def is_mta(queue: str) -> bool:
    """An MTA queue: RPC to a server or an X.400 connector's."""
    return queue.startswith(MTA_PREFIX)


# Display names of Exchange 2003 Queue Viewer (exchange-facts.md, "SMTP queues").
DISPLAY_NAMES = {
    LOCAL: "Local delivery",
    DEFERRED: "Messages queued for deferred delivery",
    UNREACHABLE: "Messages with an unreachable destination",
    HOLDING: "InTransitFolder",
    SMARTHOST: "Outbound smarthost",
}


def display_name(queue: str) -> str:
    if queue in DISPLAY_NAMES:
        return DISPLAY_NAMES[QueueId(queue)]
    # Link, MTA and mailbox delivery queues are named after their destination.
    return queue.rsplit(":", 1)[-1]


def identity(server: str, queue: str) -> str:
    """A queue as Queue Viewer names it: ``SERVER\\display name``."""
    return f"{server}\\{display_name(queue)}"


def is_outbound(queue: str) -> bool:
    """Link queues that "Disable Outbound Mail" holds: SMTP to other servers and the smarthost."""
    return queue.startswith(LINK_PREFIX) or queue == SMARTHOST
