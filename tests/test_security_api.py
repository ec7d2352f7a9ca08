"""The HTTP API as an attacker and a careless user meet it, over real sockets: numbers out of
range, nested JSON, foreign Host headers, reads that need the token, IPv6, JSON bodies that end
with a newline, a failing piece of scheduled work, and the MTA's open interval at a late tick
(issue 16, items 3, 5 and 14). The data directory's side is tests/test_security_datadir.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mailflow import limits, scenarios
from mailflow.cli.client import CliError
from mailflow.cli.run import parse_http
from mailflow.moves import dispatch as moves
from mailflow.runtime.lab import Lab
from stores import moves as stored_moves
from tests.helpers import api, events, hold_move, queue_row, sample, scrape, send
from tests.test_api import assert_error, call

ALICE = "alice@contoso.test"
DAVE = "dave@contoso.test"
BIG = 10**30
HUGE_ID = "99999999999999999999999"
MOVE = {"mailbox": ALICE, "target": "EX2003-B"}
SITE = {"type": "site", "site_a": "REDMOND", "site_b": "LONDON"}

# -- item 3: every number has a range ------------------------------------------------------

OUT_OF_RANGE = [
    ("POST", "/api/v1/moves", {**MOVE, "bad_items": BIG}),
    ("POST", "/api/v1/moves", {**MOVE, "bad_items": 100_001}),
    ("POST", "/api/v1/moves", {**MOVE, "bad_item_limit": BIG}),
    ("POST", "/api/v1/moves", {**MOVE, "at": 1e300}),
    ("POST", "/api/v1/clock/advance", {"seconds": 1e300}),
    ("POST", "/api/v1/clock/advance", {"seconds": limits.MAX_ADVANCE_SECONDS + 1}),
    ("POST", "/api/v1/connectors", {**SITE, "cost": BIG}),
    ("POST", "/api/v1/connectors", {**SITE, "cost": 101}),
    ("POST", "/api/v1/connectors", {**SITE, "cost": 0}),
    ("GET", f"/api/v1/events?after={HUGE_ID}", None),
    ("GET", "/api/v1/events?after=-1", None),
    ("GET", f"/api/v1/moves?offset={2**64}", None),
]


@pytest.mark.parametrize(("method", "path", "doc"), OUT_OF_RANGE,
                         ids=[f"{p}:{json.dumps(d)[:60]}" for _, p, d in OUT_OF_RANGE])
async def test_a_number_out_of_range_is_400_and_changes_nothing(
        lab: Lab, method: str, path: str, doc: Any) -> None:
    before = lab.clock.now()
    data = None if doc is None else json.dumps(doc).encode()
    status, body = await call(lab, method, path, data=data)
    assert_error(status, body, 400)
    assert lab.clock.now() == before
    _, moves_now = await api(lab, "GET", "/api/v1/moves")
    assert moves_now == []
    await lab.advance(3600)  # nothing stored makes the scheduled work fail
    assert not lab.scheduler.failing


async def test_the_ends_of_the_ranges_are_accepted(lab: Lab) -> None:
    status, move = await api(lab, "POST", "/api/v1/moves",
                             {**MOVE, "hold": True, "bad_items": 100_000,
                              "bad_item_limit": 100_000})
    assert status == 201, move
    status, connector = await api(lab, "POST", "/api/v1/connectors", {**SITE, "cost": 100})
    assert status == 201 and connector["cost"] == 100
    status, _ = await api(lab, "GET", f"/api/v1/events?after={limits.MAX_ID}")
    assert status == 200


async def test_deleting_a_connector_id_beyond_64_bits_is_404(lab: Lab) -> None:
    status, body = await call(lab, "DELETE", f"/api/v1/connectors/{HUGE_ID}")
    assert_error(status, body, 404)


@pytest.mark.parametrize("data", [
    b"[" * 2000 + b"]" * 2000,
    b'{"mailbox": ' + b"[" * 40 + b"]" * 40 + b"}",
    b'{"a": ' * 2000 + b"1" + b"}" * 2000,
], ids=["list-2000", "object-with-40", "objects-2000"])
async def test_deeply_nested_json_is_400(lab: Lab, data: bytes) -> None:
    status, body = await call(lab, "POST", "/api/v1/moves", data=data)
    assert_error(status, body, 400)
    assert "nested" in body["error"]


# -- item 3: a failing piece of scheduled work does not stop the others ---------------------


async def test_a_failing_move_does_not_stop_the_mta_and_is_evented_and_counted(
        lab: Lab) -> None:
    interval = lab.scenario.defaults.mta_open_interval_seconds
    # A move whose stored progress the engine cannot read: it fails at every tick.
    wanted = moves.MoveRequest(at=lab.clock.now() + 60)
    broken = await lab.store.write(
        lambda tx: moves.start(tx, lab.scenario, ALICE, "EX2003-B", wanted))
    await lab.store.write(lambda tx: stored_moves.update(tx, broken, {"progress": "broken"}))
    # The MTA's work: seed 003's stuck RPC queue, retried at every open interval.
    move = await hold_move(lab, DAVE, "EX2003-A")
    await send(lab, "EX55-LON", DAVE)
    await lab.settle()
    await api(lab, "POST", f"/api/v1/moves/{move}/complete")
    await lab.settle()
    assert len(await events(lab, 9318)) == 1

    await lab.advance(interval)
    await lab.advance(interval)
    assert lab.scheduler.failing == {"moves"}
    assert len(await events(lab, 9318)) == 3  # the MTA went on opening its queue
    [failed] = await events(lab, 1020)  # evented once, however many ticks failed
    assert failed["source"] == "mailflow" and "'moves'" in failed["text"]
    assert "TypeError" in failed["text"]
    errors = sample(await scrape(lab), "mailflow_scheduler_errors_total", work="moves")
    assert errors is not None and errors >= 2

    # Mended, it runs at the next tick.
    await lab.store.write(lambda tx: stored_moves.update(tx, broken, {"progress": {}}))
    await lab.settle()
    assert lab.scheduler.failing == set()
    _, shown = await api(lab, "GET", f"/api/v1/moves/{broken}")
    assert shown["status"] != "Queued"


# -- item 14: the MTA opens on its interval, not an interval after a late tick -----------------


async def test_the_mta_open_interval_counts_from_the_due_time(lab: Lab) -> None:
    interval = lab.scenario.defaults.mta_open_interval_seconds
    move = await hold_move(lab, DAVE, "EX2003-A")
    await send(lab, "EX55-LON", DAVE)
    await lab.settle()
    await api(lab, "POST", f"/api/v1/moves/{move}/complete")
    await lab.settle()
    first = await queue_row(lab, "EX55-LON", "mta:EX2003-A")
    due = first["next_retry_time"]
    assert due == lab.clock.now() + interval  # the first failure: an interval from now

    lab.clock.advance(due + 7 - lab.clock.now())  # a tick that runs 7 s late, as at --speed 600
    await lab.settle()
    assert len(await events(lab, 9318)) == 2
    late = await queue_row(lab, "EX55-LON", "mta:EX2003-A")
    assert late["next_retry_time"] == due + interval

    lab.clock.advance(2 * interval + 5)  # a lab stopped over two opens: skipped, same step
    await lab.settle()
    skipped = await queue_row(lab, "EX55-LON", "mta:EX2003-A")
    assert skipped["next_retry_time"] == due + 3 * interval  # the open at due + 2I was missed


# -- item 14: every JSON body ends with a newline -------------------------------------------


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/healthz"), ("GET", "/api/v1/clock"), ("GET", "/api/v1/topology"),
    ("GET", "/api/v1/moves"), ("GET", "/api/v1/events"), ("GET", "/api/v1/audit"),
    ("GET", "/api/v1/connectors"), ("GET", f"/api/v1/mailboxes/{ALICE}"),
    ("GET", "/api/v1/moves/nope"), ("GET", "/api/v1/events?after=x"),
    ("POST", "/api/v1/clock/advance"), ("GET", "/api/v1/queues"),
    ("GET", "/api/v1/queues/EX2003-A/deferred/messages"),
])
async def test_every_json_body_ends_with_a_newline(lab: Lab, method: str, path: str) -> None:
    async with aiohttp.ClientSession() as session, session.request(
            method, f"{lab.http_url}{path}", json={"seconds": 1} if method == "POST" else None,
            headers={"Authorization": f"Bearer {lab.token}"}) as response:
        raw = await response.read()
    assert response.content_type == "application/json"
    assert raw.endswith(b"}\n") or raw.endswith(b"]\n"), raw[-20:]
    assert not raw.endswith(b"\n\n")


def test_every_json_answer_goes_through_json_response() -> None:
    api_dir = Path(__file__).parent.parent / "mailflow" / "api"
    for module in api_dir.glob("*.py"):
        if module.name != "handle.py":
            assert "web.json_response(" not in module.read_text(), module.name


# -- item 5: Host header, token for reads, IPv6, file modes -----------------------------------


async def get(url: str, *, host: str | None = None, token: str | None = None) -> tuple[int, Any]:
    headers = {} if host is None else {"Host": host}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as r:
        return r.status, await r.json()


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8025", "127.0.0.1.nip.io",
                                  "mail.contoso.test"])
async def test_a_foreign_host_header_is_421(lab: Lab, host: str) -> None:
    status, body = await get(f"{lab.http_url}/api/v1/messages/x", host=host)
    assert_error(status, body, 421)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost:8025", "LOCALHOST.", "[::1]:80",
                                  "10.1.2.3:8025"])
async def test_addresses_and_localhost_are_served(lab: Lab, host: str) -> None:
    status, _ = await get(f"{lab.http_url}/api/v1/clock", host=host)
    assert status == 200


async def started(tmp_path: Path, **options: Any) -> Lab:
    lab = Lab(scenarios.load("mixed-2003"), tmp_path / "data", speed=0,
              smtp_port_override=0, **{"http": ("127.0.0.1", 0), **options})
    await lab.start()
    return lab


async def test_a_configured_name_is_served(tmp_path: Path) -> None:
    lab = await started(tmp_path, http_names=("Mail.Lab.Test",))
    try:
        status, _ = await get(f"{lab.http_url}/api/v1/clock", host="mail.lab.test:8025")
        assert status == 200
        status, body = await get(f"{lab.http_url}/api/v1/clock", host="other.lab.test")
        assert_error(status, body, 421)
    finally:
        await lab.stop()


async def test_token_for_reads(tmp_path: Path) -> None:
    lab = await started(tmp_path, token_for_reads=True)
    try:
        status, body = await get(f"{lab.http_url}/api/v1/mailboxes/{ALICE}")
        assert_error(status, body, 401)
        status, body = await get(f"{lab.http_url}/api/v1/mailboxes/{ALICE}", token="wrong")
        assert_error(status, body, 401)
        status, _ = await get(f"{lab.http_url}/api/v1/mailboxes/{ALICE}", token=lab.token)
        assert status == 200
        status, _ = await get(f"{lab.http_url}/healthz")
        assert status == 200
    finally:
        await lab.stop()


async def test_the_api_listens_on_ipv6(tmp_path: Path) -> None:
    lab = await started(tmp_path, http=("::1", 0))
    try:
        assert lab.http_url.startswith("http://[::1]:")
        status, _ = await get(f"{lab.http_url}/api/v1/clock")
        assert status == 200
    finally:
        await lab.stop()


def test_http_option_parses_ipv6_brackets() -> None:
    assert parse_http("[::]:0") == ("::", 0)
    assert parse_http("[::1]:8025") == ("::1", 8025)
    assert parse_http("0.0.0.0:8025") == ("0.0.0.0", 8025)
    for bad in ("::1:8025", "8025", "[::1]", "host:99999", "[::1]:x"):
        with pytest.raises(CliError):
            parse_http(bad)
