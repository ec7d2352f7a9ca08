"""Mail to a list (issue 17): a group address is accepted at RCPT and expanded by the server
that resolves it, through the replica it reads; over real SMTP and on the lab clock."""

from __future__ import annotations

import dataclasses
import subprocess

import aiosmtplib
import pytest

from mailflow import scenarios
from mailflow.runtime.lab import Lab
from routing.expansion import MAX_DEPTH
from stores.topology import GroupSpec, Scenario
from tests.conftest import LabFactory, require_tool
from tests.helpers import api, queue_id, sample, scrape, send
from tests.process import LabProcess, cli, mailbox_once
from tests.test_mixed_directory import audit_clean, move

SALES = "sales@contoso.test"  # alice (EX2003-A), dave and user003 (EX55-LON)
ALICE, CAROL, DAVE = "alice@contoso.test", "carol@contoso.test", "dave@contoso.test"
LONDON_USER = "user003@contoso.test"
HOUR = 3600.0


async def recipients(lab: Lab, message: str) -> dict[str, str]:
    _, doc = await api(lab, "GET", f"/api/v1/messages/{message}")
    return {r["rcpt"]: r["state"] for r in doc["recipients"]}


async def expanded(lab: Lab, message: str) -> list[str]:
    _, doc = await api(lab, "GET", f"/api/v1/messages/{message}")
    return [t["detail"] for t in doc["trace"] if t["stage"] == "expanded"]


async def test_a_group_is_accepted_at_rcpt_and_expanded_through_ad(lab: Lab) -> None:
    host, port = lab.endpoint_address("EX2003-B")
    async with aiosmtplib.SMTP(hostname=host, port=port, start_tls=False) as smtp:
        await smtp.mail(CAROL)
        code, _ = await smtp.rcpt(SALES)
        assert code == 250
        with pytest.raises(aiosmtplib.SMTPRecipientRefused):
            await smtp.rcpt("nobody@contoso.test")
    message = queue_id(await send(lab, "EX2003-B", [SALES, ALICE], sender=CAROL))
    await lab.settle()
    # alice is a recipient already: one pair for her, not two.
    assert await recipients(lab, message) == {
        SALES: "expanded", ALICE: "delivered", DAVE: "delivered", LONDON_USER: "delivered"}
    assert await expanded(lab, message) == [
        "AD universal distribution group sales@contoso.test: 2 members"]
    _, report = await api(lab, "GET", "/api/v1/audit")
    assert report["expanded"] == 1 and report["accepted"] == 4
    await audit_clean(lab)


async def test_a_5_5_dl_member_is_ndrd_until_the_clean_up_rewrote_it(lab: Lab) -> None:
    await move(lab, DAVE, "EX2003-A")  # cross-site: LONDON keeps a stub of dave's old DN

    # A 2003 server reads AD: the UDG names dave's address, delivered to his new home.
    direct = queue_id(await send(lab, "EX2003-B", SALES, sender=CAROL, subject="ad"))
    # The 5.5 server reads LONDON's DL: its member is the stub's DN, not recognized there.
    early = queue_id(await send(lab, "EX55-LON", SALES, sender=LONDON_USER, subject="early"))
    await lab.settle()
    assert (await recipients(lab, direct))[DAVE] == "delivered"
    assert await recipients(lab, early) == {
        SALES: "expanded", ALICE: "delivered", DAVE: "ndr", LONDON_USER: "delivered"}
    assert await expanded(lab, early) == ["site LONDON 5.5 DL sales@contoso.test: 3 members"]
    _, doc = await api(lab, "GET", f"/api/v1/messages/{early}")
    assert any(t["rcpt"] == DAVE and "member /o=Contoso/ou=LONDON/cn=Recipients/cn=dave stub"
               in t["detail"] for t in doc["trace"])
    assert any(t["rcpt"] == DAVE and "The recipient name is not recognized" in t["detail"]
               for t in doc["trace"])
    assert sample(await scrape(lab), "mailflow_ndrs_total", server="EX55-LON",
                  status="5.1.1") == 1

    # The agreements and directory replication do not touch the DL: still the stub's DN.
    await lab.advance(HOUR)
    still = queue_id(await send(lab, "EX55-LON", SALES, sender=LONDON_USER, subject="still"))
    await lab.settle()
    assert (await recipients(lab, still))[DAVE] == "ndr"

    # The clean-up rewrites the member to the new DN: now LONDON resolves it.
    await lab.advance(lab.scenario.defaults.adc_cleanup_seconds - HOUR)
    late = queue_id(await send(lab, "EX55-LON", SALES, sender=LONDON_USER, subject="late"))
    await lab.settle()
    assert (await recipients(lab, late))[DAVE] == "delivered"
    _, items = await api(lab, "GET", f"/api/v1/mailboxes/{DAVE}/messages")
    assert sorted(i["subject"] for i in items) == ["ad", "late"]
    await audit_clean(lab)


def nested(base: Scenario, groups: dict[str, tuple[str, ...]]) -> Scenario:
    return dataclasses.replace(base, groups=base.groups + tuple(
        GroupSpec(address, "LONDON", members) for address, members in groups.items()))


@pytest.mark.parametrize("via, sender", [("EX2003-B", CAROL), ("EX55-LON", LONDON_USER)])
async def test_groups_in_groups_are_expanded_once_and_a_loop_ends(
        lab_factory: LabFactory, via: str, sender: str) -> None:
    lab = await lab_factory.start(scenario=nested(scenarios.load("mixed-2003"), {
        "team@contoso.test": (ALICE, "crew@contoso.test", SALES),
        "crew@contoso.test": (CAROL, ALICE, "team@contoso.test")}))
    message = queue_id(await send(lab, via, "team@contoso.test", sender=sender))
    await lab.settle()
    assert await recipients(lab, message) == {
        "team@contoso.test": "expanded", ALICE: "delivered", CAROL: "delivered",
        DAVE: "delivered", LONDON_USER: "delivered"}
    assert (await expanded(lab, message))[0].endswith(
        "team@contoso.test: 4 members (through 2 nested groups)")
    await audit_clean(lab)


async def test_groups_nested_too_deep_are_left_out(lab_factory: LabFactory) -> None:
    chain = [f"level{n}@contoso.test" for n in range(MAX_DEPTH + 2)]
    lab = await lab_factory.start(scenario=nested(scenarios.load("mixed-2003"), {
        group: (f"user{n + 1:03d}@contoso.test", *chain[n + 1:n + 2])
        for n, group in enumerate(chain)}))
    message = queue_id(await send(lab, "EX2003-B", chain[0], sender=CAROL))
    await lab.settle()
    states = await recipients(lab, message)
    assert sorted(r for r, s in states.items() if s == "delivered") == [
        f"user{n + 1:03d}@contoso.test" for n in range(MAX_DEPTH)]
    assert (await expanded(lab, message))[0].endswith(
        f"nested deeper than {MAX_DEPTH}, left out: {chain[MAX_DEPTH]}")
    await audit_clean(lab)


def test_swaks_to_a_group_and_the_cli_audit(lab_process: LabProcess) -> None:
    swaks = require_tool("swaks")
    port = str(lab_process.info["endpoints"]["EX2003-A"][1])
    subprocess.run([swaks, "--from", CAROL, "--to", SALES, "--server", "127.0.0.1", "--port",
                    port], check=True, capture_output=True, timeout=60)
    assert mailbox_once(lab_process.data, ALICE, 1)["message_count"] == 1
    audit = cli(lab_process.data, "audit").stdout
    assert "expanded 1," in audit and "audit clean" in audit
