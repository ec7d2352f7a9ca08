"""Queues and queued messages of a 2007/2010 server as Get-Queue and Get-Message show them.

In: a row of ``routing.queues.list_queues`` (or of a queue's messages) of a server whose
version has ``hub_transport``, with the scenario and the queue's retry counters. Out: the
same row with Get-Queue's fields (Identity, DeliveryType, NextHopDomain, Status,
RetryCount, FirstRetryTime, LastRetryTime, NextRetryTime, MessageCount, LastError) or
Get-Message's (DateReceived, ExpirationTime, FromAddress, InternetMessageId, LastError,
RetryCount, Status, Size); exchange-facts.md, "Exchange 2007 / 2010". Queue Viewer's
Frozen is Suspended there, and ``suspend``/``resume`` name freeze and thaw (``ACTIONS``).
"""

from __future__ import annotations

from typing import Any

from routing import dsn
from routing.deferred import hub_retry_interval
from stores import queue_ids, queue_state
from stores.backend import Read
from stores.queue_ids import LOCAL, SMARTHOST, UNREACHABLE
from stores.queue_state import QueueStatus
from stores.topology import Scenario, Server

# Queue Viewer's words for a queue's state (``QueueStatus``) → Get-Queue's Status.
STATUS = {"Active": "Active", "Ready": "Ready", "Retry": "Retry", "Frozen": "Suspended"}
# 2007/2010 queue actions → the lab's own (accepted on every server's API for hub servers).
ACTIONS = {"suspend": "freeze", "resume": "thaw"}
# Queues that Get-Queue names by a word rather than a number.
_NAMED: dict[str, str] = {LOCAL: "Submission", UNREACHABLE: "Unreachable"}


def numbered(queues: list[str]) -> list[str]:
    """The queues of one server that Get-Queue numbers (``SERVER\\1``, ``SERVER\\2``...), in
    the order of their ids: delivery queues (``mapi:*``) first, then links and smarthost."""
    return sorted(q for q in queues if q not in _NAMED)


def identity(server: str, queue: str, order: list[str]) -> str:
    if queue in _NAMED:
        return f"{server}\\{_NAMED[queue]}"
    return f"{server}\\{order.index(queue) + 1}"


def delivery_type(scenario: Scenario, at: Server, queue: str) -> str:
    if queue_ids.is_mapi(queue):
        return "MapiDelivery"
    if queue_ids.is_link(queue):
        target = scenario.server(queue_ids.parse(queue).target)
        return "SmtpRelayWithinAdSite" if target.site == at.site else "SmtpRelayToRemoteAdSite"
    if queue == SMARTHOST:
        return "SmartHostConnectorDelivery"
    return "Undefined"


def next_hop_domain(scenario: Scenario, queue: str) -> str:
    if queue in _NAMED:
        return _NAMED[queue]
    if queue == SMARTHOST:
        return scenario.smarthost or SMARTHOST
    return queue_ids.parse(queue).target


def get_queue(row: dict[str, Any], scenario: Scenario, order: list[str], attempts: int,
              first_refused: float | None) -> dict[str, Any]:
    """``row`` with Get-Queue's fields; ``attempts`` is the most any of its pairs made.
    RetryCount counts the retries after the first attempt; FirstRetryTime is when the first
    of them fell due, LastRetryTime when the latest did (from the retry schedule)."""
    at, queue = scenario.server(row["server"]), row["queue"]
    retries = max(0, attempts - 1)
    parked = queue_ids.is_parking(queue) and first_refused is not None and retries > 0
    interval = hub_retry_interval(scenario.defaults, attempts)
    return {
        **row,
        "identity": identity(at.name, queue, order),
        "status": STATUS.get(row["status"], row["status"]),
        "delivery_type": delivery_type(scenario, at, queue),
        "next_hop_domain": next_hop_domain(scenario, queue),
        "retry_count": retries if queue_ids.is_parking(queue) else 0,
        "first_retry_time": (first_refused + hub_retry_interval(scenario.defaults, 1)
                             if parked and first_refused is not None else None),
        "last_retry_time": (row["next_retry_time"] - interval
                            if parked and row["next_retry_time"] is not None else None),
    }


def get_message(doc: dict[str, Any], at: Server, scenario: Scenario, queue: str,
                suspended: bool) -> dict[str, Any]:
    """A queued message of a 2007/2010 server (in ``queue``, ``suspended`` or not) with
    Get-Message's fields."""
    if doc["frozen"] or suspended:
        status = "Suspended"
    elif queue_ids.is_parking(queue) or doc["attempts"] > 1:
        status = "Retry"
    else:
        status = "Ready"
    return {
        **doc,
        "date_received": doc["arrival_time"],
        "expiration_time": dsn.expiry_due(doc["arrival_time"], at, "normal", scenario.defaults),
        "from_address": doc["sender"],
        "internet_message_id": doc["message_id"],
        "retry_count": max(0, doc["attempts"] - 1),
        "status": status,
    }


def hub_messages(db: Read, scenario: Scenario, server: str, queue: str,
                 rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages of a 2007/2010 server's queue with Get-Message's fields; others as they
    are."""
    at = scenario.server(server)
    if not at.version.hub_transport:
        return rows
    suspended = queue_state.status(db, server, queue) == QueueStatus.FROZEN
    return [get_message(r, at, scenario, queue, suspended) for r in rows]
