"""The store driver: local delivery into a mailbox store.

In: one pair whose mailbox the directory homes on this server.
Out: a ``Delivery`` naming the result. DELIVERED puts one item in the
mailbox; anything else leaves the store untouched and carries the MAPI error
the store returned, most importantly ecMailboxInTransit (0x50C) while the
mailbox's PR_IN_TRANSIT flag is set (MS-OXCSTOR §3.2.5.1.3).
"""

from __future__ import annotations

import enum
import sqlite3

from stores import mailbox as stores_mailbox
from stores.errors import MapiError
from stores.messages import Pair


class Delivery(enum.Enum):
    DELIVERED = None
    IN_TRANSIT = MapiError.ecMailboxInTransit
    UNKNOWN_MAILBOX = MapiError.ecUnknownUser

    @property
    def error(self) -> MapiError | None:
        return self.value  # type: ignore[no-any-return]


def deliver(
    conn: sqlite3.Connection, server: str, pair: Pair, now: float, in_transit: bool | None
) -> Delivery:
    """Deliver ``pair`` into its mailbox in ``server``'s store, whose PR_IN_TRANSIT flag
    for that mailbox is ``in_transit`` (None: the store does not hold the mailbox)."""
    if pair.mailbox is None or in_transit is None:
        return Delivery.UNKNOWN_MAILBOX
    if in_transit:
        return Delivery.IN_TRANSIT
    stores_mailbox.add_item(conn, server, pair.mailbox, pair.id, pair.message, pair.size, now)
    return Delivery.DELIVERED
