"""Version rules of moves (fact sheet, "Exchange 2007 / 2010"): engine, online, push or pull."""

from __future__ import annotations

import pytest

from mailflow import labs
from mailflow.errors import Invalid
from mailflow.moves import versions
from mailflow.moves.common import Engine
from mailflow.runtime.lab import Lab
from stores.topology import Version
from tests.helpers import api, mailbox, send
from tests.test_moves import show, start

FRANK, HEIDI = "frank@contoso.test", "heidi@contoso.test"
V = Version


@pytest.mark.parametrize(("source", "target", "online", "direction"), [
    (V.V2010, V.V2010, True, "pull"), (V.V2007, V.V2010, True, "pull"),
    (V.V2003, V.V2010, False, "pull"), (V.V2010, V.V2007, False, "push"),
    (V.V2010, V.V2003, False, "push"),
])
def test_mrs_pairs(source: Version, target: Version, online: bool, direction: str) -> None:
    rule = versions.rule(source, target)
    assert (rule.engine, rule.online, rule.direction) == (Engine.MRS_2010, online, direction)
    assert not versions.rule(source, target, online=False).online


@pytest.mark.parametrize(("source", "target", "reason"), [
    (V.V2003, V.V55, "nothing moves to or from Exchange 5.5"),
    (V.V55, V.V2010, "nothing moves to or from Exchange 5.5"),
    (V.V2000, V.V2010, "2003 SP2, 2007 SP2 and 2010"),
    (V.V2007, V.V2007, "only to or from an Exchange 2010 server"),
])
def test_mrs_refuses_unsupported_pairs(source: Version, target: Version, reason: str) -> None:
    with pytest.raises(Invalid, match=reason):
        versions.rule(source, target, "mrs2010")


def test_legacy_pairs_keep_their_offline_tools() -> None:
    assert versions.rule(V.V2007, V.V2007).engine is Engine.MOVE_MAILBOX_2007
    assert versions.rule(V.V2003, V.V55) == versions.Rule(Engine.WIZARD_2003, False, None)
    with pytest.raises(Invalid, match="--online is refused"):
        versions.rule(V.V2003, V.V2010, online=True)


@pytest.mark.lab(scenario="exchange-2010")
async def test_push_2010_to_2007_keeps_mail_deferred_for_the_whole_move(lab: Lab) -> None:
    before = (await mailbox(lab, FRANK))["message_count"]
    move = await start(lab, FRANK, "EX2007-A")
    assert (move["engine"], move["online"], move["direction"]) == ("mrs2010", False, "push")
    sent = 0
    while (current := await show(lab, move["id"]))["status"] != "Completed":
        state = await mailbox(lab, FRANK)
        assert state["in_transit"] and state["message_count"] == before, current
        await send(lab, "EX2010-A", FRANK, subject=f"during {sent}")
        sent += 1
        await lab.advance(10)
    assert sent > 2
    await lab.settle()
    after = await mailbox(lab, FRANK)
    assert (after["server"], after["message_count"]) == ("EX2007-A", before + sent)


@pytest.mark.lab(scenario="exchange-2010")
async def test_pull_2007_to_2010_is_online(lab: Lab) -> None:
    before = (await mailbox(lab, HEIDI))["message_count"]
    move = await start(lab, HEIDI, "EX2010-A", suspend_when_ready=True)
    assert (move["engine"], move["online"], move["direction"]) == ("mrs2010", True, "pull")
    await send(lab, "EX2007-A", HEIDI, subject="during the sync")
    await lab.settle()
    assert (await mailbox(lab, HEIDI))["message_count"] == before + 1


@pytest.mark.lab(scenario="exchange-2010")
async def test_online_push_and_offline_pull(lab: Lab) -> None:
    status, doc = await api(lab, "POST", "/api/v1/moves",
                            {"mailbox": FRANK, "target": "EX2007-A", "online": True})
    assert status == 400 and "push" in doc["error"], doc
    move = await start(lab, HEIDI, "EX2010-A", online=False)
    assert move["online"] is False and (await mailbox(lab, HEIDI))["in_transit"]


@pytest.mark.lab(scenario="mixed-2003")
async def test_2003_to_55_through_mrs_is_refused_with_the_reason(lab: Lab) -> None:
    status, doc = await api(lab, "POST", "/api/v1/moves", {
        "mailbox": "alice@contoso.test", "target": "EX55-LON", "engine": "mrs2010"})
    assert status == 400 and "Exchange 5.5 through MRS" in doc["error"], doc
    _, moves = await api(lab, "GET", "/api/v1/moves")
    assert moves == []


def test_a_lab_file_with_an_unsupported_move_is_refused() -> None:
    text = ('scenario = "mixed-2003"\n[[steps]]\nmove = { action = "start", name = "m",'
            ' mailbox = "alice@contoso.test", to = "EX55-LON", engine = "mrs2010" }\n')
    with pytest.raises(labs.LabFileError, match=r"step 1: move\.to: .*5\.5 through MRS"):
        labs.parse(text, "t.toml", None)
