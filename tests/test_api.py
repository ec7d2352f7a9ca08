"""The HTTP API over a real socket: the token, JSON errors, limits, moves that may not happen."""

from __future__ import annotations

import io
import json
import stat
from typing import Any

import aiohttp
import pytest

from mailflow.runtime.lab import Lab
from tests.helpers import api, send

ALICE = "alice@contoso.test"
JSON = "application/json"


async def call(
    lab: Lab, method: str, path: str, *, data: bytes | io.BytesIO | None = None,
    token: str | None = "lab",
) -> tuple[int, Any]:
    """A request with a raw JSON-typed body; every answer must be free of tracebacks."""
    headers = {"Content-Type": JSON}
    if token is not None:
        headers["Authorization"] = f"Bearer {lab.token if token == 'lab' else token}"
    async with aiohttp.ClientSession() as session, session.request(
        method, f"{lab.http_url}{path}", data=data, headers=headers
    ) as response:
        text = await response.text()
        assert "Traceback" not in text, text
        if response.content_type == JSON:
            return response.status, json.loads(text)
        return response.status, text


def assert_error(status: int, body: Any, expected: int) -> None:
    assert status == expected, (status, body)
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], body
    assert "Traceback" not in json.dumps(body)


async def start_move(lab: Lab, mailbox: str = ALICE, target: str = "EX2003-B") -> dict[str, Any]:
    status, move = await api(lab, "POST", "/api/v1/moves",
                             {"mailbox": mailbox, "target": target, "hold": True})
    assert status == 201, move
    assert move["status"] == "InProgress"
    return dict(move)


# -- the token ----------------------------------------------------------------------------------

STATE_CHANGING = [
    ("/api/v1/moves", {"mailbox": ALICE, "target": "EX2003-B"}),
    ("/api/v1/moves/x/complete", None),
    ("/api/v1/clock/advance", {"seconds": 3600}),
]


@pytest.mark.parametrize("token", [None, "wrong", ""], ids=["missing", "wrong", "empty"])
@pytest.mark.parametrize(("path", "body"), STATE_CHANGING, ids=[p for p, _ in STATE_CHANGING])
async def test_state_changing_requests_need_the_token(
    lab: Lab, path: str, body: Any, token: str | None
) -> None:
    _, clock = await api(lab, "GET", "/api/v1/clock", token=None)
    status, reply = await api(lab, "POST", path, body, token=token)
    assert_error(status, reply, 401)
    # Nothing happened.
    _, moves = await api(lab, "GET", "/api/v1/moves", token=None)
    assert moves == []
    _, after = await api(lab, "GET", "/api/v1/clock", token=None)
    assert after["now"] == clock["now"]
    _, alice = await api(lab, "GET", f"/api/v1/mailboxes/{ALICE}", token=None)
    assert (alice["server"], alice["in_transit"]) == ("EX2003-A", False)


async def test_a_token_of_another_lab_is_refused(lab: Lab) -> None:
    status, reply = await api(lab, "POST", "/api/v1/clock/advance", {"seconds": 1},
                              token=lab.token[:-1] + ("A" if lab.token[-1] != "A" else "B"))
    assert_error(status, reply, 401)


async def test_the_right_token_is_accepted(lab: Lab) -> None:
    _, clock = await api(lab, "GET", "/api/v1/clock")
    status, reply = await api(lab, "POST", "/api/v1/clock/advance", {"seconds": 60})
    assert status == 200 and reply["now"] >= clock["now"] + 60


@pytest.mark.parametrize("path", [
    "/healthz", "/api/v1/status", "/api/v1/topology", "/api/v1/mailboxes",
    f"/api/v1/mailboxes/{ALICE}", f"/api/v1/mailboxes/{ALICE}/messages", "/api/v1/queues",
    "/api/v1/queues/EX2003-A/deferred/messages", "/api/v1/moves", "/api/v1/events",
    "/api/v1/audit", "/api/v1/clock",
])
async def test_reads_need_no_token(lab: Lab, path: str) -> None:
    status, body = await call(lab, "GET", path, token=None)
    assert status == 200, body
    assert isinstance(body, dict | list)


async def test_the_token_file_is_private(lab: Lab) -> None:
    path = lab.data_dir / "api-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == lab.token
    assert len(lab.token) >= 32


# -- not found ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [
    "/api/v1/mailboxes/nobody@contoso.test",
    "/api/v1/mailboxes/nobody@contoso.test/messages",
    "/api/v1/moves/nosuchmove",
    "/api/v1/messages/NOSUCHMESSAGE",
    "/api/v1/messages/NOSUCHMESSAGE/raw",
    "/api/v1/queues/NOSUCHSERVER/local/messages",
    "/api/v1/nosuch",
    "/nosuch",
    "/api/v1/messages/..%2F..%2Fetc%2Fpasswd",
    "/api/v1/messages/..%2F..%2Fetc%2Fpasswd/raw",
    "/api/v1/mailboxes/..%2F..%2Fetc%2Fpasswd",
])
async def test_unknown_things_are_404_json(lab: Lab, path: str) -> None:
    status, body = await call(lab, "GET", path, token=None)
    assert_error(status, body, 404)
    assert "root:" not in json.dumps(body)


async def test_completing_an_unknown_move_is_404(lab: Lab) -> None:
    status, body = await call(lab, "POST", "/api/v1/moves/nosuchmove/complete")
    assert_error(status, body, 404)


# -- bad bodies ---------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [
    b"{not json",
    b'{"mailbox": "alice@contoso.test", "target": ',
    b"[1, 2]",
    b'"a string"',
    b'{"mailbox": 1, "target": "EX2003-B"}',
    b'{"mailbox": "alice@contoso.test"}',
    b'{"mailbox": "alice@contoso.test", "target": "EX2003-B", "hold": "yes"}',
    b'{"mailbox": "alice@contoso.test", "target": "EX2003-B", "at": "tomorrow"}',
    b'{"mailbox": "alice@contoso.test", "target": "EX2003-B", "at": NaN}',
    b'{"mailbox": "alice@contoso.test", "target": "EX2003-B", "at": 1e400}',
    b"\xff\xfe{}",
], ids=["truncated-object", "truncated-value", "array", "string", "mailbox-not-string",
        "no-target", "hold-not-bool", "at-not-number", "at-nan", "at-infinite", "not-utf8"])
async def test_malformed_move_request_is_400_json(lab: Lab, data: bytes) -> None:
    status, body = await call(lab, "POST", "/api/v1/moves", data=data)
    assert_error(status, body, 400)
    _, moves = await api(lab, "GET", "/api/v1/moves")
    assert moves == []


@pytest.mark.parametrize("seconds", ["-1", '"soon"', "true", "null", "NaN", "Infinity", "1e400"])
async def test_bad_clock_advance_is_400_json(lab: Lab, seconds: str) -> None:
    """Python's JSON reads NaN, Infinity and 1e400 as floats; none is a span of time."""
    _, clock = await api(lab, "GET", "/api/v1/clock")
    status, body = await call(lab, "POST", "/api/v1/clock/advance",
                              data=f'{{"seconds": {seconds}}}'.encode())
    assert_error(status, body, 400)
    _, after = await api(lab, "GET", "/api/v1/clock")
    assert after["now"] == clock["now"]


async def test_a_body_over_1_mb_is_413_json(lab: Lab) -> None:
    padding = "x" * (1024 * 1024 + 1)
    data = json.dumps({"mailbox": ALICE, "target": "EX2003-B", "padding": padding}).encode()
    # A file-like body: aiohttp warns about sending this much as plain bytes.
    status, body = await call(lab, "POST", "/api/v1/moves", data=io.BytesIO(data))
    assert_error(status, body, 413)
    _, moves = await api(lab, "GET", "/api/v1/moves")
    assert moves == []


# -- moves that may not happen ------------------------------------------------------------------


@pytest.mark.parametrize(("mailbox", "target", "expected"), [
    ("nobody@contoso.test", "EX2003-B", 404),
    (ALICE, "NOSUCHSERVER", 404),
    (ALICE, "EX2003-A", 400),
    (ALICE, "ex2003-a", 400),
])
async def test_impossible_move_is_refused(
    lab: Lab, mailbox: str, target: str, expected: int
) -> None:
    status, body = await api(lab, "POST", "/api/v1/moves", {"mailbox": mailbox, "target": target})
    assert_error(status, body, expected)
    _, moves = await api(lab, "GET", "/api/v1/moves")
    assert moves == []
    _, alice = await api(lab, "GET", f"/api/v1/mailboxes/{ALICE}")
    assert (alice["server"], alice["in_transit"]) == ("EX2003-A", False)


async def test_completing_a_completed_move_is_409_and_changes_nothing(lab: Lab) -> None:
    await send(lab, "EX2003-A", ALICE, subject="before the move")
    await lab.settle()
    move = await start_move(lab)
    status, done = await api(lab, "POST", f"/api/v1/moves/{move['id']}/complete")
    assert status == 200 and done["status"] == "Completed"
    await lab.settle()
    _, before = await api(lab, "GET", f"/api/v1/mailboxes/{ALICE}")
    assert (before["server"], before["message_count"]) == ("EX2003-B", 1)

    status, body = await api(lab, "POST", f"/api/v1/moves/{move['id']}/complete")
    assert_error(status, body, 409)
    await lab.settle()
    _, after = await api(lab, "GET", f"/api/v1/mailboxes/{ALICE}")
    assert after == before
    _, shown = await api(lab, "GET", f"/api/v1/moves/{move['id']}")
    assert shown["status"] == "Completed" and shown["history"] == done["history"]
    _, report = await api(lab, "GET", "/api/v1/audit")
    assert report["clean"], report["problems"]
    assert (report["accepted"], report["delivered"]) == (1, 1)


async def test_a_second_move_for_a_mailbox_in_transit_is_409(lab: Lab) -> None:
    move = await start_move(lab)
    status, body = await api(lab, "POST", "/api/v1/moves",
                             {"mailbox": ALICE, "target": "EX2000-LON"})
    assert_error(status, body, 409)
    _, moves = await api(lab, "GET", "/api/v1/moves")
    assert [m["id"] for m in moves] == [move["id"]]
    _, alice = await api(lab, "GET", f"/api/v1/mailboxes/{ALICE}")
    assert alice["in_transit"]
    assert {s["server"] for s in alice["stores"]} == {"EX2003-A", "EX2003-B"}


# -- documents ----------------------------------------------------------------------------------


async def test_mailbox_document(lab: Lab) -> None:
    status, alice = await api(lab, "GET", f"/api/v1/mailboxes/{ALICE}")
    assert status == 200
    assert {"server", "store", "in_transit", "home_mdb", "home_mta", "home_server_name",
            "legacy_exchange_dn", "proxy_addresses", "message_count"} <= set(alice)
    assert alice["server"] == "EX2003-A" and alice["in_transit"] is False
    assert "EX2003-A" in alice["store"] and "CN=EX2003-A" in alice["home_mdb"]
    assert "CN=EX2003-A" in alice["home_mta"]
    assert alice["home_server_name"].endswith("cn=EX2003-A")
    assert f"SMTP:{ALICE}" in alice["proxy_addresses"]
    assert alice["legacy_exchange_dn"].startswith("/o=Contoso/")
    assert alice["message_count"] == 0


async def test_queue_rows(lab: Lab) -> None:
    status, rows = await api(lab, "GET", "/api/v1/queues")
    assert status == 200 and rows
    fields = {"server", "queue", "identity", "display_name", "message_count", "status",
              "next_retry_time", "last_error", "oldest_message_age_seconds"}
    for row in rows:
        assert fields <= set(row), row
        assert row["identity"] == f"{row['server']}\\{row['display_name']}"
    assert {r["server"] for r in rows} == {"EX2003-A", "EX2003-B", "EX55-LON", "EX2000-LON"}


async def test_topology_and_health(lab: Lab) -> None:
    status, topology = await api(lab, "GET", "/api/v1/topology")
    assert status == 200
    assert sorted(s["name"] for s in topology["servers"]) == sorted(
        ["EX2003-A", "EX2003-B", "EX55-LON", "EX2000-LON"]
    )
    assert await api(lab, "GET", "/healthz", token=None) == (200, {"status": "ok"})


# -- pages --------------------------------------------------------------------------------------

LISTS = [
    "/api/v1/mailboxes",
    f"/api/v1/mailboxes/{ALICE}/messages",
    "/api/v1/queues",
    "/api/v1/queues/EX2003-A/local/messages",
    "/api/v1/moves",
    "/api/v1/events",
]


@pytest.mark.parametrize("query", ["limit=0", "limit=100001", "limit=-1", "offset=-1",
                                   "limit=ten", "offset=1.5", f"offset={2**64}"])
@pytest.mark.parametrize("path", LISTS)
async def test_list_routes_reject_bad_pages(lab: Lab, path: str, query: str) -> None:
    status, body = await call(lab, "GET", f"{path}?{query}", token=None)
    assert_error(status, body, 400)


@pytest.mark.parametrize("path", LISTS)
async def test_list_routes_accept_the_largest_page(lab: Lab, path: str) -> None:
    status, body = await call(lab, "GET", f"{path}?limit=100000&offset=0", token=None)
    assert status == 200 and isinstance(body, list)


async def test_mailbox_list_pages(lab: Lab) -> None:
    _, everything = await api(lab, "GET", "/api/v1/mailboxes")
    assert len(everything) == 105  # five named mailboxes and user001..user100
    _, page = await api(lab, "GET", "/api/v1/mailboxes?limit=2&offset=1")
    assert page == everything[1:3]
    _, tail = await api(lab, "GET", f"/api/v1/mailboxes?limit=10&offset={len(everything) - 1}")
    assert tail == everything[-1:]
    _, past = await api(lab, "GET", "/api/v1/mailboxes?offset=1000")
    assert past == []


async def test_queue_list_pages(lab: Lab) -> None:
    _, everything = await api(lab, "GET", "/api/v1/queues")
    assert len(everything) > 3
    _, page = await api(lab, "GET", "/api/v1/queues?limit=2&offset=1")
    assert page == everything[1:3]


async def test_mailbox_messages_pages(lab: Lab) -> None:
    for n in range(3):
        await send(lab, "EX2003-A", ALICE, subject=f"page {n}")
    await lab.settle()
    _, everything = await api(lab, "GET", f"/api/v1/mailboxes/{ALICE}/messages")
    assert [m["subject"] for m in everything] == ["page 0", "page 1", "page 2"]
    _, page = await api(lab, "GET", f"/api/v1/mailboxes/{ALICE}/messages?limit=1&offset=1")
    assert page == everything[1:2]


async def test_move_and_event_lists_page(lab: Lab) -> None:
    move = await start_move(lab)
    _, moves = await api(lab, "GET", "/api/v1/moves?limit=1")
    assert [m["id"] for m in moves] == [move["id"]]
    _, moves = await api(lab, "GET", "/api/v1/moves?limit=1&offset=1")
    assert moves == []
    _, events = await api(lab, "GET", "/api/v1/events")
    assert events
    _, first = await api(lab, "GET", "/api/v1/events?limit=1")
    assert first == events[:1]
