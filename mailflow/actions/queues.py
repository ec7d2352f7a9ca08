"""Queue Viewer actions on a running lab: Force Connection, Freeze/Unfreeze, Delete (one
message, or all of a queue's), and Disable Outbound Mail.

In: validated requests from the API (a server, a queue id, a message's queue id or
Message-ID header). Out: the change in the store inside the caller's transaction,
an event in the emulated log for every action (source ``mailflow``, category
``Queue``), a trace on every message touched, and wake-ups for the scheduler and
the transport. A frozen message, or any message of a frozen queue, is skipped by
every drain and release until it is thawed; thawing hands it back at once to
whatever it was waiting for. An X.400 queue cannot be frozen (409), as in ESM.
"""

from __future__ import annotations

from typing import Any

from mailflow.actions.organization import server_name
from mailflow.errors import Conflict, Invalid, NotFound
from routing import categorizer, dsn, hub_views, mta, queues
from stores import messages, pairs, queue_ids, queue_state
from stores.backend import Read, Tx
from stores.messages import Pair, PairState
from stores.queue_ids import HOLDING, SMARTHOST, UNREACHABLE, identity, is_parking
from stores.queue_state import QueueStatus
from stores.topology import Scenario

# Event ids of the emulated log (source "mailflow"), one per action.
EVENT_IDS = {
    "retry": 1020, "freeze": 1021, "thaw": 1022, "freeze-message": 1023, "thaw-message": 1024,
    "delete-ndr": 1025, "delete": 1026, "disable-outbound": 1027, "enable-outbound": 1028,
    "delete-all-ndr": 1029, "delete-all": 1030,
}


def known_queue(db: Read, scenario: Scenario, server: str, queue: str) -> bool:
    """Whether ``queue`` exists on ``server``: a standard queue, a link or MTA queue to a
    known server, the smarthost queue, or any queue that holds mail or has a state."""
    at = scenario.server(server)
    if queue in queues.standard_queues(at) or queue == SMARTHOST:
        return True
    try:
        kind, target = queue_ids.parse(queue)
    except ValueError:
        kind, target = None, ""
    if kind in (queue_ids.Kind.LINK, queue_ids.Kind.MTA) and scenario.has_server(target) \
            and target != at.name:
        return True
    return queue_state.exists(db, at.name, queue)


def checked_queue(db: Read, scenario: Scenario, server: str, queue: str) -> tuple[str, str]:
    """The scenario's spelling of ``server`` and ``queue``; NotFound for an unknown server
    or queue (a typo such as "defered"), for reads and actions alike."""
    name = server_name(scenario, server)
    if not known_queue(db, scenario, name, queue):
        raise NotFound(f"no queue {queue!r} on {name}")
    return name, queue


def action_word(scenario: Scenario, server: str, word: str) -> str:
    """The lab's action for ``word``: 2007/2010 servers also take Get-Queue's ``suspend`` and
    ``resume`` for freeze and thaw (``routing.hub_views.ACTIONS``); other servers do not."""
    if word not in hub_views.ACTIONS:
        return word
    name = server_name(scenario, server)
    if not scenario.server(name).version.hub_transport:
        raise Invalid(f"{word} is the 2007/2010 word; {name} is Exchange"
                      f" {scenario.server(name).version}: use {hub_views.ACTIONS[word]}")
    return hub_views.ACTIONS[word]


def _word(scenario: Scenario, server: str, status: QueueStatus) -> str:
    """A queue status as the server's version names it (Frozen is Suspended on 2007/2010)."""
    if scenario.server(server).version.hub_transport:
        return hub_views.STATUS[status.value]
    return status.value


def resolve(db: Read, server: str, queue: str, message: str) -> list[Pair]:
    """The pairs of one message (queue id, or Message-ID header with or without <>) that
    wait in ``queue`` on ``server``; NotFound when there are none."""
    found = pairs.of_message(db, server, queue, message)
    if not found:
        raise NotFound(f"no message {message!r} in queue {identity(server, queue)}")
    return found


def _event(tx: Tx, action: str, server: str, text: str) -> None:
    tx.event("mailflow", EVENT_IDS[action], "Information", server, text, category="Queue")


def _wake(tx: Tx, scenario: Scenario, server: str, queue: str, ids: list[int] | None) -> None:
    """Thawed mail goes on at once: deferred mail of a mailbox no longer in transit is
    retried now, an InTransitFolder of a finished move is flushed, links are kicked."""
    if is_parking(queue):
        pairs.retry_deferred(tx, server, tx.now, ids=ids, skip_frozen=True, queue=queue)
    elif queue == HOLDING:
        mta.flush_holding(tx, scenario, server)
    tx.note("mta", server=server)  # the scheduler looks for due work now


def freeze_queue(tx: Tx, scenario: Scenario, server: str, queue: str) -> dict[str, Any]:
    """Freeze a whole queue: none of its mail moves until it is thawed."""
    if queue.startswith(queue_ids.X400_PREFIX):
        # Exchange System Manager offers no Freeze on an X.400 queue (only on its messages),
        # whether or not it holds mail now.
        raise Conflict(f"queue {identity(server_name(scenario, server), queue)} is an X.400"
                       " queue: X.400 queues cannot be frozen (freeze its messages instead)")
    name, queue = checked_queue(tx, scenario, server, queue)
    if queue_state.status(tx, name, queue) == QueueStatus.FROZEN:
        raise Conflict(f"queue {identity(name, queue)} is already frozen")
    queue_state.set_status(tx, name, queue, QueueStatus.FROZEN)
    _event(tx, "freeze", name, f"Queue {identity(name, queue)} frozen by an operator.")
    return {"server": name, "queue": queue, "status": _word(scenario, name, QueueStatus.FROZEN)}


def thaw_queue(tx: Tx, scenario: Scenario, server: str, queue: str) -> dict[str, Any]:
    """Unfreeze a queue (409 when it is not frozen); its unfrozen mail goes on at once."""
    name, queue = checked_queue(tx, scenario, server, queue)
    if queue_state.status(tx, name, queue) != QueueStatus.FROZEN:
        raise Conflict(f"queue {identity(name, queue)} is not frozen")
    queue_state.set_status(tx, name, queue, QueueStatus.READY)
    _event(tx, "thaw", name, f"Queue {identity(name, queue)} unfrozen by an operator.")
    _wake(tx, scenario, name, queue, None)
    return {"server": name, "queue": queue, "status": _word(scenario, name, QueueStatus.READY)}


def set_message_frozen(tx: Tx, scenario: Scenario, server: str, queue: str, message: str,
                       frozen: bool) -> dict[str, Any]:
    """Freeze or thaw one message in one queue (409 when it already is)."""
    name, queue = checked_queue(tx, scenario, server, queue)
    found = resolve(tx, name, queue, message)
    word = "frozen" if frozen else "thawed"
    change = [p for p in found if p.frozen != frozen]
    if not change:
        raise Conflict(f"message {found[0].message} in {identity(name, queue)} is"
                       f" {'already frozen' if frozen else 'not frozen'}")
    ids = [p.id for p in change]
    pairs.set_frozen(tx, ids, frozen)
    for pair in change:
        tx.trace(pair.message, pair.rcpt, name, "frozen" if frozen else "thawed",
                 f"by an operator in queue {queue}")
    _event(tx, "freeze-message" if frozen else "thaw-message", name,
           f"Message {found[0].message} in queue {identity(name, queue)} {word} by an"
           " operator.")
    if not frozen:
        _wake(tx, scenario, name, queue, ids)
    return {"server": name, "queue": queue, "message": found[0].message, "frozen": frozen,
            "recipients": [p.rcpt for p in change]}


def delete_message(tx: Tx, scenario: Scenario, server: str, queue: str, message: str,
                   ndr: bool) -> dict[str, Any]:
    """Delete one message from a queue, with an NDR to its sender (4.3.2) or silently."""
    name, queue = checked_queue(tx, scenario, server, queue)
    found = resolve(tx, name, queue, message)
    _delete(tx, scenario, name, queue, found, ndr)
    how = "with NDR" if ndr else "without NDR"
    _event(tx, "delete-ndr" if ndr else "delete", name,
           f"Message {found[0].message} deleted {how} from queue"
           f" {identity(name, queue)} by an operator ({len(found)} recipient(s)).")
    return {"server": name, "queue": queue, "message": found[0].message, "ndr": ndr,
            "deleted": [p.rcpt for p in found]}


def delete_all_messages(tx: Tx, scenario: Scenario, server: str, queue: str, ndr: bool
                        ) -> dict[str, Any]:
    """Delete all messages (with NDR / no NDR) of a queue, frozen ones too; 404 when it
    holds none."""
    name, queue = checked_queue(tx, scenario, server, queue)
    found = pairs.all_in_queue(tx, name, queue)
    if not found:
        raise NotFound(f"queue {identity(name, queue)} holds no messages")
    _delete(tx, scenario, name, queue, found, ndr)
    count = len({pair.message for pair in found})
    how = "with NDR" if ndr else "without NDR"
    _event(tx, "delete-all-ndr" if ndr else "delete-all", name,
           f"All {count} message(s) deleted {how} from queue {identity(name, queue)} by an"
           f" operator ({len(found)} recipient(s)).")
    return {"server": name, "queue": queue, "ndr": ndr, "messages": count,
            "recipients": len(found)}


def _delete(tx: Tx, scenario: Scenario, name: str, queue: str, found: list[Pair], ndr: bool
            ) -> None:
    """End ``found`` (pairs in ``queue`` on server ``name``) as deleted, with one NDR per
    message (``dsn.deleted_by_admin``: 4.3.2) or silently."""
    if ndr:
        categorizer.fail(tx, scenario, found, scenario.server(name), dsn.deleted_by_admin(),
                         final=PairState.DELETED)
        return
    for pair in found:
        messages.place_final(tx, pair, PairState.DELETED,
                             last_error="deleted by an operator without NDR")
        tx.trace(pair.message, pair.rcpt, name, "deleted",
                 f"by an operator from queue {queue}, without NDR")


def retry_queue(tx: Tx, scenario: Scenario, server: str, queue: str) -> dict[str, Any]:
    """Force Connection: every unfrozen message of the queue is tried at once; mail in
    ``unreachable`` is routed again (after a connector or a smarthost was added)."""
    name, queue = checked_queue(tx, scenario, server, queue)
    if queue == HOLDING:
        raise Conflict("InTransitFolder mail leaves only when its mailbox's move ends")
    if queue_state.status(tx, name, queue) == QueueStatus.FROZEN:
        raise Conflict(f"queue {identity(name, queue)} is frozen; thaw it first")
    if queue == UNREACHABLE:
        waiting = pairs.waiting(tx, [name], queue)
        for pair in waiting:
            categorizer.route(tx, scenario, pair, scenario.server(name))
        count = len(waiting)
    else:
        count = pairs.retry_now(tx, name, queue, tx.now)
    if not count and queue_state.status(tx, name, queue) == QueueStatus.READY:
        raise NotFound(f"queue {identity(name, queue)} holds no messages to retry")
    _event(tx, "retry", name, f"Force Connection on queue {identity(name, queue)}:"
           f" {count} recipient(s) retried.")
    tx.note("mta", server=name)
    if queue_ids.is_link(queue):
        tx.note("link", server=name, target=queue_ids.parse(queue).target)
    elif queue == SMARTHOST:
        tx.note("smarthost", server=name)
    return {"server": name, "queue": queue, "retried": count}


def set_outbound(tx: Tx, scenario: Scenario, server: str, enabled: bool) -> dict[str, Any]:
    """Disable Outbound Mail: the server's link queues (``smtp:*``, ``smarthost``) hold
    their mail until it is enabled again; local delivery and the MTA go on."""
    name = server_name(scenario, server)
    if queue_state.outbound_disabled(tx, name) != enabled:
        raise Conflict(f"outbound mail on {name} is already {'en' if enabled else 'dis'}abled")
    queue_state.set_outbound(tx, name, enabled, tx.now)
    word = "enabled" if enabled else "disabled"
    _event(tx, "enable-outbound" if enabled else "disable-outbound", name,
           f"Outbound mail {word} on {name} by an operator.")
    if enabled:
        tx.note("mta", server=name)  # run_due kicks every link with mail due
    return {"server": name, "outbound": word}
