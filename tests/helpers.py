"""What tests do to a running lab from outside: real SMTP, real HTTP."""

from __future__ import annotations

from typing import Any

import aiohttp
import aiosmtplib
from aiosmtpd.smtp import SMTP, Envelope, Session
from prometheus_client.parser import text_string_to_metric_families

from mailflow.moves.states import FINAL
from mailflow.runtime.lab import Lab


async def send(
    lab: Lab, server: str, to: str | list[str], *, sender: str = "tester@example.net",
    subject: str = "test", headers: str = "",
) -> str:
    """Send one message over SMTP; returns the 250 reply text (raises on refusal)."""
    host, port = lab.endpoint_address(server)
    rcpts = [to] if isinstance(to, str) else to
    body = (f"From: <{sender}>\r\nTo: {', '.join(rcpts)}\r\nSubject: {subject}\r\n{headers}"
            f"Message-ID: <{subject.replace(' ', '.')}@example.net>\r\n\r\nHello.\r\n")
    async with aiosmtplib.SMTP(hostname=host, port=port, start_tls=False,
                               local_hostname="client.example.net") as smtp:
        _, reply = await smtp.sendmail(sender, rcpts, body.encode())
    return reply


def queue_id(reply: str) -> str:
    return reply.split("<", 1)[1].split(">", 1)[0]


async def api(
    lab: Lab, method: str, path: str, body: Any = None, *, token: str | None = "lab"
) -> tuple[int, Any]:
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {lab.token if token == 'lab' else token}"
    async with aiohttp.ClientSession() as session, session.request(
        method, f"{lab.http_url}{path}", json=body, headers=headers
    ) as response:
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()


async def scrape(lab: Lab) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"{lab.http_url}/metrics") as r:
        assert r.status == 200
        return await r.text()


def sample(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


async def queue_row(lab: Lab, server: str, queue: str) -> dict[str, Any]:
    status, rows = await api(lab, "GET", "/api/v1/queues")
    assert status == 200
    empty = {"message_count": 0, "status": "Ready"}
    return next((r for r in rows if r["server"] == server and r["queue"] == queue), empty)


async def queue_depth(lab: Lab, server: str, queue: str) -> int:
    return int((await queue_row(lab, server, queue))["message_count"])


async def events(lab: Lab, event_id: int) -> list[dict[str, Any]]:
    status, rows = await api(lab, "GET", "/api/v1/events?limit=100000")
    assert status == 200
    return [r for r in rows if r["event_id"] == event_id]


async def mailbox(lab: Lab, address: str) -> dict[str, Any]:
    status, doc = await api(lab, "GET", f"/api/v1/mailboxes/{address}")
    assert status == 200, doc
    return dict(doc)


async def hold_move(lab: Lab, address: str, target: str) -> str:
    status, move = await api(lab, "POST", "/api/v1/moves",
                             {"mailbox": address, "target": target, "hold": True})
    assert status == 201, move
    return str(move["id"])


class RefuseNobody:
    """The RCPT of an aiosmtpd handler standing in for a tester's mail catcher or smarthost:
    it takes every recipient but refuses nobody@ for good."""

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def assert_nothing_in_transit_after_a_final_state(lab: Lab) -> None:
    """The move invariant of the stateful tests: a store keeps a mailbox in transit, or a
    second copy of it, only while a move of that mailbox is open."""
    def rows(sql: str, *args: Any) -> list[Any]:
        return list(lab.store.read_sync(lambda c: c.execute(sql, args).fetchall()))

    locked = {r[0] for r in rows("SELECT mailbox FROM store_mailboxes WHERE in_transit = 1")}
    open_moves = {r[0] for r in rows("SELECT mailbox FROM moves WHERE status NOT IN (?,?,?)",
                                     *sorted(s.value for s in FINAL))}
    assert locked <= open_moves
    for mailbox, stores in rows("SELECT mailbox, COUNT(*) FROM store_mailboxes GROUP BY mailbox"):
        assert stores == 1 or mailbox in open_moves
