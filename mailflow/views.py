"""Read models: the store's rows in, the JSON documents the API and the CLI show out.

Every function takes a read connection (``stores.backend.Read``) and
returns plain data; none writes and none holds SQL: the queries are in
``stores.readmodels`` and ``stores.moves``. A name that matches nothing is
``NotFound`` here.
"""

from __future__ import annotations

from typing import Any

from mailflow.errors import NotFound
from mailflow.moves import trail
from mailflow.moves.describe import describe
from mailflow.moves.report import xml_report
from mailflow.queue_views import find_message
from routing import queues
from stores import connectors, readmodels
from stores import moves as stored_moves
from stores.backend import Read
from stores.messages import FINAL
from stores.topology import Scenario


def topology(conn: Read, scenario: Scenario) -> dict[str, Any]:
    return {
        "name": scenario.name,
        "organization": scenario.organization,
        "domains": list(scenario.domains),
        "sites": list(scenario.sites),
        "servers": [
            {"name": s.name, "version": s.version, "site": s.site, "smtp_port": s.smtp_port}
            for s in scenario.servers
        ],
        "connectors": [c.as_dict() for c in connectors.all_connectors(conn)],
        "rpc": readmodels.rpc(conn),
    }


def mailbox(conn: Read, address: str) -> dict[str, Any]:
    doc = readmodels.mailbox(conn, address)
    if doc is None:
        raise NotFound(f"no mailbox {address!r}")
    return doc


def mailbox_trail(conn: Read, scenario: Scenario, address: str) -> dict[str, Any]:
    """The mailbox with its MRS request's msExchMailboxMove* attributes and its archive."""
    return trail.mailbox_extras(conn, scenario, mailbox(conn, address))


def mailboxes(conn: Read, limit: int, offset: int) -> list[dict[str, Any]]:
    return readmodels.mailboxes(conn, limit, offset)


def mailbox_messages(
    conn: Read, address: str, limit: int, offset: int
) -> list[dict[str, Any]]:
    items = readmodels.mailbox_items(conn, address, limit, offset)
    if items is None:
        raise NotFound(f"no mailbox {address!r}")
    return items


def message(conn: Read, ident: str) -> dict[str, Any]:
    """One message by queue id or Message-ID header: recipients, trace, DSNs about it."""
    message_id, others = find_message(conn, ident)
    doc = readmodels.message(conn, message_id)
    doc["same_message_id"] = others
    doc["dsns"] = readmodels.dsns(conn, message_id)
    doc["recipients"] = [{**r, "final": r["state"] in FINAL}
                         for r in readmodels.recipients(conn, message_id)]
    doc["trace"] = readmodels.trace(conn, message_id)
    return doc


def raw_message(conn: Read, ident: str) -> bytes:
    message_id, _ = find_message(conn, ident)
    return readmodels.raw_message(conn, message_id)


def _move(conn: Read, move_id: str) -> stored_moves.MoveRecord:
    found = stored_moves.get(conn, move_id)
    if found is None:
        raise NotFound(f"no move {move_id!r}")
    return found


def move(conn: Read, move_id: str, now: float) -> dict[str, Any]:
    found = _move(conn, move_id)
    return describe(found, now, stored_moves.queue_position(conn, found))


def move_list(conn: Read, now: float, limit: int, offset: int) -> list[dict[str, Any]]:
    return [describe(m, now) for m in stored_moves.page(conn, limit, offset)]


def events(conn: Read, limit: int, offset: int, after: int) -> list[dict[str, Any]]:
    return readmodels.events(conn, limit, offset, after)


def status(conn: Read, scenario: Scenario, now: float) -> dict[str, Any]:
    rows = queues.list_queues(conn, scenario, now)
    return {
        "scenario": scenario.name,
        "clock": now,
        "in_transit": readmodels.in_transit(conn),
        "queued": sum(r["message_count"] for r in rows),
        "queues": {r["identity"]: r["message_count"] for r in rows if r["message_count"]},
        "moves": readmodels.move_counts(conn),
    }


def move_report(conn: Read, move_id: str) -> bytes:
    """The wizard's XML report of a move."""
    return xml_report(_move(conn, move_id))
