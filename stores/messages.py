"""Where each (message, recipient) pair is: the message state machine.

In: a pair and the place it should go next. Out: the pair's row updated, or
``stores.machine.InvalidTransition`` naming both states; and the ``messages``
rows the categorizer and DSNs write and read. Every move of a pair in the whole
lab goes through ``place_queued`` or ``place_final`` (``carry`` for a place it
only passes through), so a pair is always in exactly one place: a queue
on one server (LOCAL, DEFERRED, REMOTE, UNREACHABLE) or a final state
(DELIVERED into one mailbox item, RELAYED out of the organization through the
outbound smarthost, NDR, DELETED, or EXPANDED: a group address whose members
became pairs of their own, issue 17).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, NamedTuple

from stores import queue_ids
from stores.backend import Conn, Tx
from stores.machine import Machine


class PairState(enum.StrEnum):
    LOCAL = "local"  # waiting for the local store driver
    DEFERRED = "deferred"  # refused with ecMailboxInTransit, parked until released or retried
    REMOTE = "remote"  # in a link or MTA queue towards another server
    UNREACHABLE = "unreachable"  # no route to the home server
    DELIVERED = "delivered"
    RELAYED = "relayed"  # the outbound smarthost answered 250: it left the organization
    NDR = "ndr"
    DELETED = "deleted"
    EXPANDED = "expanded"  # a distribution list: its members are pairs of their own (issue 17)


FINAL = frozenset({PairState.DELIVERED, PairState.RELAYED, PairState.NDR, PairState.DELETED,
                   PairState.EXPANDED})

# Every queued pair may end in any final state (an operator deletes it, a DSN fails it ...).
TRANSITIONS: dict[PairState, frozenset[PairState]] = {
    PairState.LOCAL: frozenset(
        {PairState.DEFERRED, PairState.REMOTE, PairState.UNREACHABLE} | FINAL
    ),
    # A retry that is refused again leaves the pair DEFERRED (DEFERRED -> DEFERRED).
    PairState.DEFERRED: frozenset(
        {PairState.DEFERRED, PairState.LOCAL, PairState.REMOTE, PairState.UNREACHABLE} | FINAL
    ),
    # REMOTE -> LOCAL is the pair arriving at its next server.
    PairState.REMOTE: frozenset(
        {PairState.REMOTE, PairState.LOCAL, PairState.DEFERRED, PairState.UNREACHABLE} | FINAL
    ),
    PairState.UNREACHABLE: frozenset(
        {PairState.UNREACHABLE, PairState.LOCAL, PairState.REMOTE, PairState.DEFERRED} | FINAL
    ),
    PairState.DELIVERED: frozenset(),
    PairState.RELAYED: frozenset(),
    PairState.NDR: frozenset(),
    PairState.DELETED: frozenset(),
    PairState.EXPANDED: frozenset(),
}
PAIRS = Machine.of_targets("pair", TRANSITIONS)

_FIXED_STATES: dict[str, PairState] = {
    queue_ids.LOCAL: PairState.LOCAL,
    queue_ids.DEFERRED: PairState.DEFERRED,
    queue_ids.HOLDING: PairState.DEFERRED,
    queue_ids.UNREACHABLE: PairState.UNREACHABLE,
    queue_ids.SMARTHOST: PairState.REMOTE,
}


def queue_state(queue: str) -> PairState:
    """The state a pair has while it sits in queue ``queue``."""
    state = _FIXED_STATES.get(queue)
    if state is not None:
        return state
    if queue_ids.is_mapi(queue):
        return PairState.DEFERRED
    if queue.startswith((queue_ids.LINK_PREFIX, queue_ids.MTA_PREFIX)):
        return PairState.REMOTE
    raise ValueError(f"unknown queue id {queue!r}")


@dataclass
class Pair:
    id: int
    message: str
    rcpt: str
    mailbox: str | None
    state: PairState
    server: str
    queue: str | None
    queued_at: float | None
    attempts: int
    next_attempt: float | None
    first_refused_at: float | None
    frozen: bool
    accepted_at: float
    size: int
    priority: str
    # False for a pair just accepted whose row is written with its first place, not
    # inserted and then at once updated (``place_queued``, ``place_final``).
    stored: bool = True

    @classmethod
    def accepted(cls, message: str, rcpt: str, server: str, now: float, size: int,
                 priority: str) -> Pair:
        """A pair just accepted on ``server``, in "local" until routing places it."""
        return cls(id=0, message=message, rcpt=rcpt, mailbox=None, state=PairState.LOCAL,
                   server=server, queue=queue_ids.LOCAL, queued_at=now, attempts=0,
                   next_attempt=None, first_refused_at=None, frozen=False, accepted_at=now,
                   size=size, priority=priority, stored=False)

    @classmethod
    def from_row(cls, row: Any) -> Pair:
        return cls(
            id=row["id"],
            message=row["message"],
            rcpt=row["rcpt"],
            mailbox=row["mailbox"],
            state=PairState(row["state"]),
            server=row["server"],
            queue=row["queue"],
            queued_at=row["queued_at"],
            attempts=row["attempts"],
            next_attempt=row["next_attempt"],
            first_refused_at=row["first_refused_at"],
            frozen=bool(row["frozen"]),
            accepted_at=row["accepted_at"],
            size=row["size"],
            priority=row["priority"],
        )


PAIR_SELECT = (
    "SELECT p.*, m.size, m.priority FROM pairs p"
    " JOIN messages m ON m.id = p.message"
)


def load(conn: Conn, where: str, args: tuple[object, ...] = ()) -> list[Pair]:
    """Pairs ``p`` (with their message ``m``) meeting ``where``: for the query modules of
    ``stores`` only; routing and mailflow call the named queries of ``stores.pairs``."""
    return [Pair.from_row(r) for r in conn.execute(f"{PAIR_SELECT} WHERE {where}", args)]


def place_queued(
    tx: Tx,
    pair: Pair,
    server: str,
    queue: str,
    *,
    next_attempt: float | None = None,
    last_error: str | None = None,
    hop_token: str | None = None,
    count_attempt: bool = False,
) -> None:
    """Move ``pair`` into ``queue`` on ``server``; the row takes the pair's mailbox too
    (routing resolves it on the way)."""
    new = queue_state(queue)
    PAIRS.move(pair.id, pair.state, new)
    same_queue = pair.server == server and pair.queue == queue
    attempts = pair.attempts + 1 if count_attempt else (pair.attempts if same_queue else 0)
    if not pair.stored:
        _insert(tx, pair, new, server, queue, attempts, next_attempt, last_error, hop_token)
    else:
        # Staying in the same queue (a refused retry) keeps the pair's age in that queue.
        tx.execute(
            "UPDATE pairs SET state=?, queued_at=CASE WHEN server=? AND queue=? THEN queued_at"
            " ELSE ? END, server=?, queue=?, attempts=?, next_attempt=?, last_error=?,"
            " hop_token=?, mailbox=? WHERE id=?",
            (new.value, server, queue, tx.now, server, queue, attempts, next_attempt,
             last_error, hop_token, pair.mailbox, pair.id),
        )
    pair.state, pair.server, pair.queue, pair.attempts = new, server, queue, attempts
    pair.next_attempt = next_attempt


def carry(pair: Pair, server: str, queue: str) -> None:
    """Move ``pair`` into ``queue`` on ``server`` in memory only, on its way through: the
    same write then places it again (``place_queued``, ``place_final``), and that place
    writes the row, so the pair never has a row that says where it only passed through."""
    new = queue_state(queue)
    PAIRS.move(pair.id, pair.state, new)
    pair.state, pair.server, pair.queue, pair.attempts = new, server, queue, 0
    pair.next_attempt = None


def place_final(tx: Tx, pair: Pair, state: PairState, *, last_error: str | None = None) -> None:
    """Move ``pair`` out of every queue into a final state."""
    if state not in FINAL:
        raise ValueError(f"{state.name} is not a final state")
    PAIRS.move(pair.id, pair.state, state)
    if not pair.stored:
        _insert(tx, pair, state, pair.server, None, 0, None,
                None if state is PairState.DELIVERED else last_error, None)
    else:
        # A delivered pair has no error left to show; an NDR'd or deleted one keeps its last.
        error = None if state is PairState.DELIVERED else last_error
        keep = "NULL" if state is PairState.DELIVERED else "last_error"
        tx.execute(
            "UPDATE pairs SET state=?, server=?, queue=NULL, next_attempt=NULL, hop_token=NULL,"
            f" mailbox=?, last_error=COALESCE(?, {keep}) WHERE id=?",
            (state.value, pair.server, pair.mailbox, error, pair.id),
        )
    pair.state, pair.queue = state, None


def _insert(tx: Tx, pair: Pair, state: PairState, server: str, queue: str | None,
            attempts: int, next_attempt: float | None, last_error: str | None,
            hop_token: str | None) -> None:
    """Write a just-accepted pair's row straight into its first place."""
    cur = tx.execute(
        "INSERT INTO pairs(message, rcpt, mailbox, state, server, queue, queued_at, attempts,"
        " next_attempt, last_error, hop_token, accepted_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
        " RETURNING id",
        (pair.message, pair.rcpt, pair.mailbox, state.value, server, queue, tx.now, attempts,
         next_attempt, last_error, hop_token, pair.accepted_at),
    )
    pair.id, pair.stored = cur.fetchone()[0], True


# -- the messages table -------------------------------------------------------------------------


class NewMessage(NamedTuple):
    """A message accepted on ``server``; a DSN names the message it reports on."""

    id: str
    message_id: str
    mail_from: str
    subject: str
    raw: bytes
    server: str
    priority: str
    dsn_of: str | None = None
    dsn_summary: str | None = None


def insert(tx: Tx, msg: NewMessage) -> None:
    tx.execute(
        "INSERT INTO messages(id, message_id, mail_from, subject, size, raw, accepted_server,"
        " accepted_at, accepted_real, priority, dsn_of, dsn_summary)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
        " RETURNING id",
        (msg.id, msg.message_id, msg.mail_from, msg.subject, len(msg.raw), msg.raw, msg.server,
         tx.now, tx.real, msg.priority, msg.dsn_of, msg.dsn_summary),
    )


def exists(conn: Conn, message: str) -> bool:
    return conn.execute("SELECT 1 FROM messages WHERE id=?", (message,)).fetchone() is not None


def message_id_forms(ident: str) -> tuple[str, str]:
    """A Message-ID header value as given and with its angle brackets: a message may be
    named either way."""
    return ident, ident if ident.startswith("<") else f"<{ident}>"


def set_raw(conn: Conn, message: str, raw: bytes) -> None:
    conn.execute("UPDATE messages SET raw=?, size=? WHERE id=?", (raw, len(raw), message))


def dsn_summary(conn: Conn, message: str) -> str | None:
    """What a DSN message says it is about (None for mail that is not a DSN)."""
    row = conn.execute("SELECT dsn_summary FROM messages WHERE id=?", (message,)).fetchone()
    return None if row is None or not row[0] else str(row[0])


class Original(NamedTuple):
    """What a DSN takes from the message it reports on."""

    mail_from: str
    subject: str
    raw: bytes
    accepted_at: float
    dsn_of: str | None


def original(conn: Conn, message: str) -> Original:
    row = conn.execute(
        "SELECT mail_from, subject, raw, accepted_at, dsn_of FROM messages WHERE id=?",
        (message,),
    ).fetchone()
    return Original(row["mail_from"], row["subject"], bytes(row["raw"]), row["accepted_at"],
                    row["dsn_of"])


def arrivals(conn: Conn, message: str, rcpt: str, server: str) -> int:
    """How often a recipient of a message has arrived at ``server`` from an MTA or a hop
    (its ``received`` traces): the MTA's loop detection (issue 17)."""
    row = conn.execute("SELECT COUNT(*) FROM trace WHERE message=? AND rcpt=? AND server=?"
                       " AND stage='received'", (message, rcpt, server)).fetchone()
    return int(row[0])
