"""Fault injection over real sockets: counted, random, delayed, disconnecting, throttling rules;
what they leave in the store (nothing half-stored), the API's checks, scenarios' [[faults]]."""

from __future__ import annotations

import asyncio
from typing import Any

import aiosmtplib
import pytest

from mailflow import scenarios
from mailflow.runtime.lab import Lab
from mailflow.scenarios import ScenarioError
from stores.faults import FAULT_INJECTED_EVENT
from tests.conftest import LabFactory
from tests.helpers import api, events, sample, scrape, send
from tests.smtpwire import connect

ALICE = "alice@contoso.test"


async def add_rule(lab: Lab, **rule: Any) -> dict[str, Any]:
    status, doc = await api(lab, "POST", "/api/v1/faults", rule)
    assert status == 201, doc
    return dict(doc)


async def outcome(lab: Lab, sender: str, subject: str = "test") -> int:
    """The code a whole send ends with: 250, or the refusal's."""
    try:
        await send(lab, "EX2003-A", ALICE, sender=sender, subject=subject)
    except aiosmtplib.SMTPResponseException as exc:
        return exc.code
    except aiosmtplib.SMTPRecipientsRefused as exc:
        return exc.recipients[0].code
    return 250


async def stored(lab: Lab, subject: str) -> int:
    status, rows = await api(lab, "GET", f"/api/v1/messages?subject={subject}")
    assert status == 200
    return len(rows)


async def audit_clean(lab: Lab) -> bool:
    status, report = await api(lab, "GET", "/api/v1/audit")
    assert status == 200
    return bool(report["clean"])


async def test_a_counted_fault_strikes_exactly_the_next_matching_senders_then_recovers(
        lab: Lab) -> None:
    rule = await add_rule(lab, stage="mail", sender=r"^bad\d*@", action="reply", code=451,
                          text="4.3.0 Try later", count=3)
    # Concurrent sessions race for the count: exactly three of them get it.
    codes = await asyncio.gather(*(outcome(lab, f"bad{i}@example.net") for i in range(8)))
    assert sorted(codes) == [250] * 5 + [451] * 3
    assert await outcome(lab, "good@example.net") == 250
    assert await outcome(lab, "bad@example.net") == 250  # recovered
    status, rules = await api(lab, "GET", "/api/v1/faults")
    assert status == 200 and rules[0]["id"] == rule["id"]
    assert (rules[0]["remaining"], rules[0]["injected"]) == (0, 3)
    assert len(await events(lab, FAULT_INJECTED_EVENT)) == 3
    metrics = await scrape(lab)
    assert sample(metrics, "mailflow_faults_injected_total", server="EX2003-A",
                  stage="mail") == 3


async def test_a_probability_of_a_half_over_400_messages_is_within_the_binomial_bound(
        lab: Lab) -> None:
    # Seeded, so the run repeats exactly; the bound 200 +- 50 is five standard deviations
    # (sqrt(400 * 0.25) = 10) in any case.
    await add_rule(lab, stage="mail", action="reply", code=450, probability=0.5, seed=20)
    wire = await connect(lab)
    assert (await wire.command("EHLO client.example.net"))[0] == 250
    refused = 0
    for _ in range(400):
        code, _ = await wire.command("MAIL FROM:<chaos@example.net>")
        assert code in (250, 450)
        refused += code == 450
        assert (await wire.command("RSET"))[0] == 250
    await wire.close()
    assert 150 <= refused <= 250
    assert len(await events(lab, FAULT_INJECTED_EVENT)) == refused


async def test_a_reply_after_data_stores_nothing_and_a_disconnect_after_data_keeps_it(
        lab: Lab) -> None:
    rule = await add_rule(lab, stage="after-data", recipient="alice@", action="reply",
                          code=554, count=1)
    assert await outcome(lab, "x@example.net", subject="refused") == 554
    assert await stored(lab, "refused") == 0
    await api(lab, "DELETE", f"/api/v1/faults/{rule['id']}")
    await add_rule(lab, stage="after-data", action="disconnect", count=1)
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await send(lab, "EX2003-A", ALICE, subject="dropped")
    assert await stored(lab, "dropped") == 1  # committed before the 250 that never came
    assert await audit_clean(lab)


async def test_a_delay_answers_as_usual_and_a_disconnect_before_data_stores_nothing(
        lab: Lab) -> None:
    await add_rule(lab, stage="rcpt", action="delay", seconds=0.2, count=1)
    assert await outcome(lab, "x@example.net", subject="slow") == 250
    assert await stored(lab, "slow") == 1
    await add_rule(lab, stage="data", action="disconnect", count=1)
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await send(lab, "EX2003-A", ALICE, subject="cut")
    assert await stored(lab, "cut") == 0
    assert await audit_clean(lab)


async def test_a_client_that_gives_up_during_a_delay_after_data_leaves_nothing_stored(
        lab: Lab) -> None:
    await add_rule(lab, stage="after-data", action="delay", seconds=0.5, count=1)
    wire = await connect(lab)
    for line in ("EHLO client.example.net", "MAIL FROM:<x@example.net>", f"RCPT TO:<{ALICE}>"):
        assert (await wire.command(line))[0] == 250
    assert (await wire.command("DATA"))[0] == 354
    # The session, to await its end (after the delay) once the client has gone.
    [session] = lab.endpoints["EX2003-A"]._public.sessions
    seen = lab.changes.generation
    await wire.send(b"Subject: gave up\r\n\r\nHello.\r\n.\r\n")
    await lab.changes.wait(seen, 60)  # the injection's record: the delay has begun
    assert (await api(lab, "GET", "/api/v1/faults"))[1][0]["injected"] == 1
    await wire.close()
    await session._handler_coroutine
    assert await stored(lab, "gave up") == 0
    assert await audit_clean(lab)


async def test_a_fault_at_connect_answers_the_greeting_and_closes(lab: Lab) -> None:
    await add_rule(lab, stage="connect", server="EX2003-A", action="reply", code=421,
                   text="4.3.2 Service not available", count=1)
    wire = await connect(lab, greet=False)
    assert await wire.reply() == (421, "4.3.2 Service not available")
    assert await wire.closed()
    await wire.close()
    other = await connect(lab, "EX2003-B")  # another server, and the next session: greeted
    await other.close()
    again = await connect(lab)
    await again.close()


async def test_a_throttle_refuses_past_its_rate_until_the_minute_has_passed(lab: Lab) -> None:
    await add_rule(lab, stage="mail", action="throttle", per_minute=2)
    codes = [await outcome(lab, "bulk@example.net") for _ in range(3)]
    assert codes == [250, 250, 452]
    await lab.advance(61)
    assert await outcome(lab, "bulk@example.net") == 250


@pytest.mark.parametrize("rule", [
    {"stage": "mail", "action": "reply"},  # no code
    {"stage": "mail", "action": "reply", "code": 250},
    {"stage": "mail", "action": "reply", "code": 451, "sender": "(?<=x)y"},
    {"stage": "mail", "action": "reply", "code": 451, "sender": "["},
    {"stage": "helo", "action": "reply", "code": 451, "sender": "x"},
    {"stage": "mail", "action": "reply", "code": 451, "server": "NOPE"},
    {"stage": "mail", "action": "delay"},
    {"stage": "mail", "action": "reply", "code": 451, "probability": 2},
    {"stage": "mail", "action": "reply", "code": 451, "colour": "red"},
    {"stage": "later", "action": "reply", "code": 451},
])
async def test_bad_rules_are_a_json_400_and_change_nothing(lab: Lab, rule: dict[str, Any]
                                                           ) -> None:
    status, doc = await api(lab, "POST", "/api/v1/faults", rule)
    assert status == 400 and doc["error"]
    assert (await api(lab, "GET", "/api/v1/faults"))[1] == []


async def test_rules_need_the_token_and_can_be_removed_one_by_one_or_all(lab: Lab) -> None:
    rule = {"stage": "mail", "action": "reply", "code": 451}
    assert (await api(lab, "POST", "/api/v1/faults", rule, token=None))[0] == 401
    first = await add_rule(lab, **rule)
    await add_rule(lab, **rule)
    assert (await api(lab, "DELETE", "/api/v1/faults/999"))[0] == 404
    assert (await api(lab, "DELETE", f"/api/v1/faults/{first['id']}"))[0] == 200
    assert (await api(lab, "DELETE", "/api/v1/faults"))[1] == {"removed": 1}
    assert await outcome(lab, "x@example.net") == 250


SCENARIO_FAULT = """
[[faults]]
server = "EX2003-A"
stage = "rcpt"
recipient = "^alice@"
action = "reply"
code = 452
count = 1
"""


async def test_scenario_faults_are_loaded_and_survive_a_restart_with_their_count(
        lab_factory: LabFactory) -> None:
    base = scenarios.load("mixed-2003")
    scenario = scenarios.parse(base.source + SCENARIO_FAULT, "test")
    assert scenario.faults[0].recipient == "^alice@"
    lab = await lab_factory.start(scenario=scenario)
    assert (await api(lab, "GET", "/api/v1/faults"))[1][0]["remaining"] == 1
    await add_rule(lab, stage="mail", sender="^later@", action="reply", code=451, count=2)
    assert await outcome(lab, "x@example.net") == 452
    await lab_factory.stop(lab)
    lab = await lab_factory.start(scenario=scenario)
    rules = (await api(lab, "GET", "/api/v1/faults"))[1]
    assert [(r["remaining"], r["injected"]) for r in rules] == [(0, 1), (2, 0)]
    assert await outcome(lab, "x@example.net") == 250


def test_a_bad_scenario_fault_names_its_key() -> None:
    base = scenarios.load("mixed-2003").source
    with pytest.raises(ScenarioError, match=r"faults\[0\]\.code"):
        scenarios.parse(base + SCENARIO_FAULT.replace("452", "200"), "test")
