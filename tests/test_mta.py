"""Exchange 5.5/2000: the InTransitFolder, the MTA's RPC and X.400 queues, and seed 003's
stuck RPC queue with its fix, over real SMTP and on the lab clock."""

from __future__ import annotations

import pytest

from mailflow.runtime.lab import Lab
from tests.helpers import (
    api,
    events,
    hold_move,
    mailbox,
    queue_depth,
    queue_id,
    queue_row,
    sample,
    scrape,
    send,
)

DAVE = "dave@contoso.test"
ERIN = "erin@contoso.test"


async def test_stuck_rpc_queue_after_a_cross_site_move_and_its_fix(lab: Lab) -> None:
    interval = lab.scenario.defaults.mta_open_interval_seconds
    move = await hold_move(lab, DAVE, "EX2003-A")
    for n in range(2):
        await send(lab, "EX55-LON", DAVE, subject=f"held {n}")
    await lab.settle()
    assert await queue_depth(lab, "EX55-LON", "holding") == 2
    assert (await queue_row(lab, "EX55-LON", "holding"))["identity"] == "EX55-LON\\InTransitFolder"

    await api(lab, "POST", f"/api/v1/moves/{move}/complete")
    await lab.settle()
    assert await queue_depth(lab, "EX55-LON", "holding") == 0
    stuck = await queue_row(lab, "EX55-LON", "mta:EX2003-A")
    assert (stuck["message_count"], stuck["status"]) == (2, "Retry")
    assert stuck["identity"] == "EX55-LON\\EX2003-A"
    assert stuck["next_retry_time"] == lab.clock.now() + interval
    assert "1722" in stuck["last_error"]
    bind_failures = await events(lab, 9318)
    assert len(bind_failures) == 1 and "Remote Server Name EX2003-A" in bind_failures[0]["text"]
    assert bind_failures[0]["source"] == "MSExchangeMTA"
    assert len(await events(lab, 9322)) == 1
    failures = sample(await scrape(lab), "mailflow_mta_connection_failures_total",
                      server="EX55-LON", target="EX2003-A", event_id="9318")
    assert failures == 1

    await lab.advance(interval)  # the open interval: 9318 again, still stuck
    assert len(await events(lab, 9318)) == 2
    assert sample(await scrape(lab), "mailflow_mta_connection_failures_total",
                  server="EX55-LON", target="EX2003-A", event_id="9318") == 2
    assert await queue_depth(lab, "EX55-LON", "mta:EX2003-A") == 2

    # KB 841659: LONDON's 5.5 directory knows dave@ only as a stub until the REDMOND
    # agreement has run and directory replication has carried his new object to LONDON.
    early = queue_id(await send(lab, "EX55-LON", DAVE, subject="in the window"))
    await lab.settle()
    _, trace = await api(lab, "GET", f"/api/v1/messages/{early}")
    assert [t["state"] for t in trace["recipients"]] == ["ndr"]
    await lab.advance(lab.scenario.defaults.ds_replication_seconds)
    fresh = queue_id(await send(lab, "EX55-LON", DAVE, subject="after the move"))
    await lab.settle()
    _, trace = await api(lab, "GET", f"/api/v1/messages/{fresh}")
    assert any(t["stage"] == "relayed" and "over x400" in t["detail"] for t in trace["trace"])
    dave = await mailbox(lab, DAVE)
    assert (dave["server"], dave["message_count"]) == ("EX2003-A", 1)
    assert await queue_depth(lab, "EX55-LON", "mta:EX2003-A") == 2

    status, connector = await api(lab, "POST", "/api/v1/connectors",
                                  {"type": "site", "site_a": "REDMOND", "site_b": "LONDON"})
    assert status == 201 and connector["name"] == "REDMOND-LONDON Site"
    await lab.advance(interval)  # the next retry binds over the site connector
    assert await queue_depth(lab, "EX55-LON", "mta:EX2003-A") == 0
    assert (await queue_row(lab, "EX55-LON", "mta:EX2003-A"))["status"] == "Ready"
    assert (await mailbox(lab, DAVE))["message_count"] == 3
    _, report = await api(lab, "GET", "/api/v1/audit")
    assert report["clean"] and report["delivered"] == 3


async def test_cross_site_move_gets_a_new_legacy_dn(lab: Lab) -> None:
    before = await mailbox(lab, DAVE)
    move = await hold_move(lab, DAVE, "EX2003-A")
    await api(lab, "POST", f"/api/v1/moves/{move}/complete")
    after = await mailbox(lab, DAVE)
    assert before["legacy_exchange_dn"] == "/o=Contoso/ou=LONDON/cn=Recipients/cn=dave"
    assert after["legacy_exchange_dn"] == "/o=Contoso/ou=REDMOND/cn=Recipients/cn=dave"
    assert f"X500:{before['legacy_exchange_dn']}" in after["proxy_addresses"]
    assert after["home_server_name"].endswith("/cn=EX2003-A")


async def test_intra_site_move_is_released_over_rpc(lab: Lab) -> None:
    move = await hold_move(lab, ERIN, "EX55-LON")
    ids = [queue_id(await send(lab, "EX2000-LON", ERIN, subject=f"erin {n}")) for n in range(2)]
    await lab.settle()
    assert await queue_depth(lab, "EX2000-LON", "holding") == 2
    await api(lab, "POST", f"/api/v1/moves/{move}/complete")
    await lab.settle()
    erin = await mailbox(lab, ERIN)
    assert (erin["server"], erin["message_count"]) == ("EX55-LON", 2)
    for message in ids:
        _, doc = await api(lab, "GET", f"/api/v1/messages/{message}")
        assert any(t["stage"] == "relayed" and t["detail"] == "to EX55-LON over rpc"
                   for t in doc["trace"])
    assert await events(lab, 9318) == []


async def test_stopped_mta_keeps_the_intransitfolder_until_it_starts(lab: Lab) -> None:
    move = await hold_move(lab, DAVE, "EX2000-LON")
    status, _ = await api(lab, "POST", "/api/v1/services/EX55-LON/mta/stop")
    assert status == 200
    await send(lab, "EX55-LON", DAVE)
    await api(lab, "POST", f"/api/v1/moves/{move}/complete")
    await lab.advance(3600)
    assert await queue_depth(lab, "EX55-LON", "holding") == 1
    status, _ = await api(lab, "POST", "/api/v1/services/EX55-LON/mta/stop")
    assert status == 409

    await api(lab, "POST", "/api/v1/services/EX55-LON/mta/start")
    await lab.settle()
    assert await queue_depth(lab, "EX55-LON", "holding") == 0
    dave = await mailbox(lab, DAVE)
    assert (dave["server"], dave["message_count"]) == ("EX2000-LON", 1)
    assert len(await events(lab, 7036)) == 2


async def test_2003_flush_waits_for_a_stopped_mta(lab: Lab) -> None:
    """KB 924567: a 2003 store whose MTA is disabled flushes after the time-out."""
    flush = lab.scenario.defaults.mta_flush_timeout_seconds
    await api(lab, "POST", "/api/v1/services/EX2003-A/mta/stop")
    move = await hold_move(lab, "alice@contoso.test", "EX2003-B")
    await send(lab, "EX2003-A", "alice@contoso.test")
    await api(lab, "POST", f"/api/v1/moves/{move}/complete")
    await lab.settle()
    waiting = await queue_row(lab, "EX2003-A", "deferred")
    assert waiting["message_count"] == 1 and "KB 924567" in waiting["last_error"]
    await lab.advance(flush - 60)
    assert await queue_depth(lab, "EX2003-A", "deferred") == 1
    await lab.advance(60)
    assert await queue_depth(lab, "EX2003-A", "deferred") == 0
    assert (await mailbox(lab, "alice@contoso.test"))["message_count"] == 1


async def test_force_connection_retries_a_stuck_queue_at_once(lab: Lab) -> None:
    move = await hold_move(lab, DAVE, "EX2003-A")
    await send(lab, "EX55-LON", DAVE)
    await api(lab, "POST", f"/api/v1/moves/{move}/complete")
    await lab.settle()
    assert await queue_depth(lab, "EX55-LON", "mta:EX2003-A") == 1
    status, _ = await api(lab, "POST", "/api/v1/rpc",
                          {"a": "EX55-LON", "b": "EX2003-A", "allowed": True})
    assert status == 200
    status, retried = await api(lab, "POST", "/api/v1/queues/EX55-LON/mta:EX2003-A/retry")
    assert status == 200 and retried["retried"] == 1
    await lab.settle()  # no clock advance: Force Connection does not wait for the interval
    assert await queue_depth(lab, "EX55-LON", "mta:EX2003-A") == 0
    assert (await mailbox(lab, DAVE))["message_count"] == 1


async def test_the_mta_gives_up_after_its_open_retries(lab: Lab) -> None:
    defaults = lab.scenario.defaults
    move = await hold_move(lab, DAVE, "EX2003-A")
    await send(lab, "EX55-LON", DAVE)
    await api(lab, "POST", f"/api/v1/moves/{move}/complete")
    await lab.settle()
    # 144 opens, one every 10 minutes: the MTA gives up after a day, before any timeout.
    await lab.advance(defaults.mta_max_open_retries * defaults.mta_open_interval_seconds)
    assert len(await events(lab, 9318)) == defaults.mta_max_open_retries
    assert await queue_depth(lab, "EX55-LON", "mta:EX2003-A") == 0
    gave_up = await queue_row(lab, "EX55-LON", "unreachable")
    assert gave_up["message_count"] == 1 and "144 open retries" in gave_up["last_error"]
    _, report = await api(lab, "GET", "/api/v1/audit")
    assert report["clean"]


@pytest.mark.lab(defaults={"mta_max_open_retries": 10_000})
async def test_urgent_mail_times_out_first(lab: Lab) -> None:
    patient = lab.scenario.defaults
    move = await hold_move(lab, DAVE, "EX2003-A")
    await send(lab, "EX55-LON", DAVE, subject="urgent", headers="X-Priority: 1\r\n")
    await send(lab, "EX55-LON", DAVE, subject="normal")
    await api(lab, "POST", f"/api/v1/moves/{move}/complete")
    await lab.advance(patient.mta_timeout_urgent_seconds)
    assert await queue_depth(lab, "EX55-LON", "mta:EX2003-A") == 1
    gave_up = await queue_row(lab, "EX55-LON", "unreachable")
    assert gave_up["message_count"] == 1 and "timeout (urgent)" in gave_up["last_error"]


async def test_connector_and_rpc_requests_are_checked(lab: Lab) -> None:
    bad = [
        ({"type": "bridge", "site_a": "REDMOND", "site_b": "LONDON"}, 400),
        ({"type": "site", "site_a": "REDMOND", "site_b": "REDMOND"}, 400),
        ({"type": "site", "site_a": "REDMOND", "site_b": "PARIS"}, 404),
        ({"type": "x400", "site_a": "REDMOND", "site_b": "LONDON",
          "name": "REDMOND-LONDON X.400"}, 409),
    ]
    for body, code in bad:
        status, doc = await api(lab, "POST", "/api/v1/connectors", body)
        assert status == code and "error" in doc, (body, doc)
    _, listed = await api(lab, "GET", "/api/v1/connectors")
    assert [c["name"] for c in listed] == ["REDMOND-LONDON X.400"]
    status, _ = await api(lab, "DELETE", f"/api/v1/connectors/{listed[0]['id']}")
    assert status == 200
    assert (await api(lab, "DELETE", f"/api/v1/connectors/{listed[0]['id']}"))[0] == 404
    status, _ = await api(lab, "POST", "/api/v1/rpc", {"a": "EX55-LON", "b": "NOPE",
                                                       "allowed": True})
    assert status == 404
