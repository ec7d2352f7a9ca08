"""Connectors between sites, RPC reachability between servers, and the next hop.

In: a source server and the home server of a recipient.
Out: a ``Hop``: deliver locally, relay over real SMTP into a link queue
``smtp:<SERVER>``, or cross by the internal MTA hop (RPC within a site or
over a site connector, X.400 across an X.400 connector), or no route at all.
Connectors and RPC pairs are seeded from the scenario and change at run time;
they are kept in the store (``stores.connectors``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from stores import connectors as stored
from stores import queue_ids
from stores.backend import Conn
from stores.queue_ids import QueueId
from stores.topology import Server

# How a hop carries mail (``Hop.via``): not to be confused with ``routing.transport``.
Via = Literal["local", "smtp", "rpc", "x400", "none"]


@dataclass(frozen=True)
class Hop:
    via: Via
    target: str
    queue: QueueId | None

    @property
    def mta(self) -> bool:
        """Hops the MTA carries, through its queues ``mta:<SERVER>`` and ``mta:x400:<NAME>``."""
        return self.via in ("rpc", "x400")


def rpc_possible(db: Conn, a: Server, b: Server) -> bool:
    """RPC binds within a site or over a site connector, unless set otherwise for the pair."""
    setting = stored.rpc_setting(db, a.name, b.name)
    if setting is not None:
        return setting
    if a.site == b.site:
        return True
    return any(c.type == "site" for c in stored.between(db, a.site, b.site))


def next_hop(db: Conn, source: Server, home: Server, *, mta: bool = False) -> Hop:
    """The routing table's choice; ``mta`` asks for the MTA's own choice (XAPI connections only)."""
    if source.name == home.name:
        return Hop("local", home.name, queue_ids.LOCAL)
    speaks_smtp = not mta and source.version.smtp_transport and home.version.smtp_transport
    if source.site == home.site:
        if speaks_smtp:
            return Hop("smtp", home.name, queue_ids.link(home.name))
        return Hop("rpc", home.name, queue_ids.mta(home.name))
    for connector in stored.between(db, source.site, home.site):
        if connector.type == "smtp" and speaks_smtp:
            return Hop("smtp", home.name, queue_ids.link(home.name))
        if connector.type == "site":
            return Hop("rpc", home.name, queue_ids.mta(home.name))
        if connector.type == "x400":
            return Hop("x400", home.name, queue_ids.x400(connector.name))
    return Hop("none", home.name, None)
