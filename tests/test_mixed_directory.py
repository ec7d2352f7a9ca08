"""Mixed mode (issue 17): the 5.5 directory of each site beside AD, the ADC, the NDR window
after a cross-site move (KB 841659), stubs and DL clean-up (seed 004), and the split mailbox
(KB 299473); over real SMTP and on the lab clock."""

from __future__ import annotations

import dataclasses
import sqlite3
from typing import Any

import pytest

from mailflow import scenarios
from mailflow.runtime.lab import Lab
from stores.topology import AgreementSpec
from tests.conftest import LabFactory
from tests.helpers import api, events, hold_move, mailbox, queue_id, sample, scrape, send

DAVE, ERIN, ALICE = "dave@contoso.test", "erin@contoso.test", "alice@contoso.test"
LONDON_USER = "user003@contoso.test"  # a 5.5 user on EX55-LON
HOUR = 3600.0


async def move(lab: Lab, address: str, target: str) -> str:
    ident = await hold_move(lab, address, target)
    status, doc = await api(lab, "POST", f"/api/v1/moves/{ident}/complete")
    assert status == 200 and doc["status"] == "Completed", doc
    await lab.settle()
    return ident


async def replicas(lab: Lab, address: str) -> dict[str, list[dict[str, Any]]]:
    status, doc = await api(lab, "GET", f"/api/v1/directory/{address}")
    assert status == 200, doc
    found: dict[str, list[dict[str, Any]]] = {}
    for row in doc["replicas"]:
        found.setdefault(row["replica"], []).append(row)
    return found


async def states(lab: Lab, message: str) -> list[str]:
    _, doc = await api(lab, "GET", f"/api/v1/messages/{message}")
    return [r["state"] for r in doc["recipients"]]


async def audit_clean(lab: Lab) -> None:
    _, report = await api(lab, "GET", "/api/v1/audit")
    assert report["clean"], report


async def test_the_ndr_window_opens_after_a_cross_site_move_and_closes(lab: Lab) -> None:
    await move(lab, DAVE, "EX2003-A")
    seen = await replicas(lab, DAVE)
    assert [r["state"] for r in seen["LONDON"]] == ["stub"]
    assert [r["state"] for r in seen["REDMOND"]] == ["present"]  # the old object, old DN
    ad = seen["AD"][0]
    assert ad["legacy_exchange_dn"] == "/o=Contoso/ou=REDMOND/cn=Recipients/cn=dave"
    assert "X500:/o=Contoso/ou=LONDON/cn=Recipients/cn=dave" in ad["proxy_addresses"]
    assert ad["attributes"]["msExchADCGlobalNames"] == "EX5:NM_MOVED_CROSS_SITE"
    assert len(await events(lab, 1101)) == 1

    # A 5.5 user's mail resolves through LONDON's 5.5 directory: a stub, so an NDR.
    early = queue_id(await send(lab, "EX55-LON", DAVE, sender=LONDON_USER, subject="early"))
    # A 2003 user's mail resolves through AD: delivered at once.
    direct = queue_id(await send(lab, "EX2003-B", DAVE, sender=ALICE, subject="direct"))
    await lab.settle()
    assert await states(lab, early) == ["ndr"]
    assert await states(lab, direct) == ["delivered"]
    _, trace = await api(lab, "GET", f"/api/v1/messages/{early}")
    assert any(t["stage"] == "categorized" and "LONDON 5.5 directory: recipient stub"
               in t["detail"] for t in trace["trace"])
    assert any("The recipient name is not recognized" in t["detail"] for t in trace["trace"])
    assert sample(await scrape(lab), "mailflow_ndrs_total", server="EX55-LON",
                  status="5.1.1") == 1
    _, items = await api(lab, "GET", f"/api/v1/mailboxes/{LONDON_USER}/messages")
    assert len(items) == 1  # the NDR, from EX55-LON

    # The REDMOND agreement and then directory replication close the window.
    await lab.advance(HOUR)
    seen = await replicas(lab, DAVE)
    assert {r["state"] for r in seen["LONDON"]} == {"stub", "present"}
    late = queue_id(await send(lab, "EX55-LON", DAVE, sender=LONDON_USER, subject="late"))
    await lab.settle()
    assert await states(lab, late) == ["delivered"]
    assert (await mailbox(lab, DAVE))["message_count"] == 2
    await audit_clean(lab)


async def test_the_clean_up_rewrites_dl_members_and_deletes_the_stub(lab: Lab) -> None:
    old, new = ("/o=Contoso/ou=LONDON/cn=Recipients/cn=dave",
                "/o=Contoso/ou=REDMOND/cn=Recipients/cn=dave")
    _, sales = await api(lab, "GET", "/api/v1/groups/sales@contoso.test")
    assert sales["replicated_object_version"] == 1
    await move(lab, DAVE, "EX2003-A")
    _, sales = await api(lab, "GET", "/api/v1/groups/sales@contoso.test")
    assert sales["replicated_object_version"] == 2  # seed 004: bumped by the move
    assert all(old in dl["members"] for dl in sales["dls"])
    stub = (await replicas(lab, DAVE))["LONDON"][0]
    assert stub["member_of"] == ["/o=Contoso/ou=LONDON/cn=Distribution Lists/cn=sales"]

    await lab.advance(HOUR)  # agreements and replication: the stub stays
    assert any(r["state"] == "stub" for r in (await replicas(lab, DAVE))["LONDON"])
    await lab.advance(lab.scenario.defaults.adc_cleanup_seconds - HOUR)
    _, sales = await api(lab, "GET", "/api/v1/groups/sales@contoso.test")
    assert all(new in dl["members"] and old not in dl["members"] for dl in sales["dls"])
    assert sales["replicated_to_55"] == 2
    seen = await replicas(lab, DAVE)
    assert [r["state"] for r in seen["LONDON"]] == ["present"]
    assert seen["AD"][0]["attributes"]["ADCDoNotReplicate"] == "TRUE"  # the AD object stays
    assert len(await events(lab, 1102)) == 1
    assert sample(await scrape(lab), "mailflow_directory_stubs", site="LONDON") == 0


async def test_restarting_the_adc_runs_everything_at_once(lab: Lab) -> None:
    status, doc = await api(lab, "POST", "/api/v1/adc/stop")
    assert status == 200 and not doc["running"]
    assert all(a["next_run"] is None for a in doc["agreements"])
    await move(lab, DAVE, "EX2003-A")
    await lab.advance(2 * HOUR)  # stopped: no agreement runs, no clean-up
    _, doc = await api(lab, "GET", "/api/v1/adc")
    assert all(a["last_run"] is None for a in doc["agreements"])
    redmond = next(a for a in doc["agreements"] if a["name"] == "REDMOND CA")
    assert redmond["pending_changes"] >= 1
    status, doc = await api(lab, "POST", "/api/v1/adc/start")
    assert status == 200 and doc["running"]
    now = lab.clock.now()
    assert all(a["last_run"] == now for a in doc["agreements"])
    assert "LONDON" not in doc["stubs"]  # the clean-up ran at once (copies go at replication)
    assert sample(await scrape(lab), "mailflow_adc_last_run_timestamp_seconds",
                  agreement="REDMOND CA") == now


async def split_move(lab: Lab) -> None:
    """erin@ (EX2000-LON) gets one message, then moves to EX55-LON in her own site while
    someone changes her in LONDON's 5.5 directory, as in the 5.5 Administrator."""
    await send(lab, "EX2003-A", ERIN, sender=ALICE, subject="before")
    await lab.settle()
    ident = await hold_move(lab, ERIN, "EX55-LON")
    status, doc = await api(lab, "POST", f"/api/v1/directory/{ERIN}/edit",
                            {"replica": "LONDON", "set": {"telephoneNumber": "555-0100"}})
    assert status == 200, doc
    await api(lab, "POST", f"/api/v1/moves/{ident}/complete")
    await lab.settle()


async def test_the_split_mailbox_with_the_adc_running(lab: Lab) -> None:
    await split_move(lab)
    status, _ = await api(lab, "POST", "/api/v1/adc/run", {"agreement": "LONDON CA"})
    assert status == 200
    assert len(await events(lab, 1103)) == 1
    erin = await mailbox(lab, ERIN)
    assert erin["server"] == "EX2000-LON"  # homeMDB reset to the source
    assert erin["attributes"]["telephoneNumber"] == "555-0100"
    after = queue_id(await send(lab, "EX2003-A", ERIN, sender=ALICE, subject="after"))
    await lab.settle()
    assert await states(lab, after) == ["delivered"]
    stores = {s["server"]: s["items"] for s in (await mailbox(lab, ERIN))["stores"]}
    assert stores == {"EX55-LON": 1, "EX2000-LON": 1}  # data on the target, new mail apart
    assert len(await events(lab, 1104)) == 1
    await audit_clean(lab)


async def no_split(lab: Lab) -> None:
    await split_move(lab)
    await lab.advance(2 * HOUR)
    assert not await events(lab, 1103)
    await send(lab, "EX2003-A", ERIN, sender=ALICE, subject="after")
    await lab.settle()
    erin = await mailbox(lab, ERIN)
    assert erin["server"] == "EX55-LON" and erin["message_count"] == 2
    assert [s["server"] for s in erin["stores"]] == ["EX55-LON"]
    await audit_clean(lab)


async def test_no_split_with_the_adc_stopped(lab: Lab) -> None:
    await api(lab, "POST", "/api/v1/adc/stop")
    await no_split(lab)


async def test_no_split_with_the_agreement_at_never(lab_factory: LabFactory) -> None:
    base = scenarios.load("mixed-2003")
    assert base.adc is not None
    never = dataclasses.replace(base.adc, agreements=tuple(
        dataclasses.replace(a, schedule=None) if a.site == "LONDON" else a
        for a in base.adc.agreements))
    lab = await lab_factory.start(scenario=dataclasses.replace(base, adc=never))
    _, doc = await api(lab, "GET", "/api/v1/adc")
    assert {a["name"]: a["schedule"] for a in doc["agreements"]}["LONDON CA"] == "never"
    await no_split(lab)


def test_an_agreement_spec_defaults_to_both_ways_hourly() -> None:
    assert AgreementSpec("X", "LONDON") == AgreementSpec("X", "LONDON", "both", 3600.0)


@pytest.mark.lab(scenario="exchange-2010")
async def test_no_adc_outside_mixed_mode(lab: Lab) -> None:
    status, doc = await api(lab, "GET", "/api/v1/adc")
    assert status == 409, doc
    status, doc = await api(lab, "GET", "/api/v1/directory/frank@fabrikam.test")
    assert status in (200, 404)


@pytest.mark.sqlite_only
async def test_an_older_data_directory_gets_its_5_5_directories_at_start(
        lab_factory: LabFactory) -> None:
    lab = await lab_factory.start()
    await lab_factory.stop(lab)
    conn = sqlite3.connect(lab.data_dir / "mailflow.db", isolation_level=None)
    conn.executescript("DELETE FROM ds55; DELETE FROM udgs; DELETE FROM adc_agreements;")
    conn.close()
    lab = await lab_factory.start()
    assert [r["state"] for r in (await replicas(lab, DAVE))["LONDON"]] == ["present"]
    _, doc = await api(lab, "GET", "/api/v1/adc")
    assert [a["name"] for a in doc["agreements"]] == ["LONDON CA", "REDMOND CA"]
