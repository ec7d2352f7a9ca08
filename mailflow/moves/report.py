"""The XML report of a move, as the Move Mailbox wizard saved it at the end.

In: a move (``stores.moves.MoveRecord``). Out: an XML document with the
per-mailbox outcome, items copied, bad items, and the step and reason of a failure.
"""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

from mailflow.moves import common
from stores.moves import MoveRecord


def _time(epoch: float | None) -> str:
    return "" if epoch is None else dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat()


def xml_report(move: MoveRecord) -> bytes:
    done, request = move.progress, common.options(move)
    root = ET.Element("move-mailbox", {"id": move.id, "engine": move.engine})
    if move.batch:
        root.set("batch", move.batch)
    mailbox = ET.SubElement(root, "mailbox", {"address": move.mailbox})
    fields = {
        "source-server": move.source,
        "target-server": move.target,
        "status": move.status.value,
        "status-detail": move.status_detail,
        "start-time": _time(move.begun_at),
        "end-time": _time(move.finished_at),
        "items-copied": str(done.get("items_transferred", 0)),
        "bytes-copied": str(done.get("bytes_transferred", 0)),
        "bad-items": str(done.get("bad_items_encountered", 0)),
        "bad-item-limit": "" if request.bad_item_limit is None else str(request.bad_item_limit),
    }
    for name, value in fields.items():
        ET.SubElement(mailbox, name).text = value
    if done.get("failure_reason"):
        failure = ET.SubElement(mailbox, "failure", {"step": done.get("failure_step") or ""})
        failure.text = done["failure_reason"]
    ET.indent(root)
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document
