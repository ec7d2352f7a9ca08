"""The store driver: local delivery into a mailbox store.

In: one pair whose mailbox the directory homes on this server, and the
mailbox's PR_IN_TRANSIT flag in this store. Out: a ``Delivery`` naming the
result (``verdict``); DELIVERED then puts one item in the mailbox
(``put_item``, once the pair's row says DELIVERED); anything else leaves the
store untouched and carries the MAPI error the store returned, most
importantly ecMailboxInTransit (0x50C) while the mailbox's PR_IN_TRANSIT flag
is set (MS-OXCSTOR §3.2.5.1.3).
"""

from __future__ import annotations

import enum

from stores import mailbox as stores_mailbox
from stores.backend import Conn
from stores.errors import MapiError
from stores.messages import Pair


class Delivery(enum.Enum):
    DELIVERED = None
    IN_TRANSIT = MapiError.ecMailboxInTransit
    UNKNOWN_MAILBOX = MapiError.ecUnknownUser

    @property
    def error(self) -> MapiError | None:
        return self.value  # type: ignore[no-any-return]


def verdict(pair: Pair, in_transit: bool | None) -> Delivery:
    """What the store answers to delivering ``pair`` into its mailbox, whose PR_IN_TRANSIT
    flag in this store is ``in_transit`` (None: the store does not hold the mailbox)."""
    if pair.mailbox is None or in_transit is None:
        return Delivery.UNKNOWN_MAILBOX
    if in_transit:
        return Delivery.IN_TRANSIT
    return Delivery.DELIVERED


def put_item(conn: Conn, server: str, pair: Pair, now: float) -> None:
    """A DELIVERED verdict carried out: one item in the mailbox, for the pair's row."""
    assert pair.mailbox is not None and pair.stored
    stores_mailbox.add_item(conn, server, pair.mailbox, pair.id, pair.message, pair.size, now)
