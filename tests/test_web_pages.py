"""The pages over real HTTP: the Queue Viewer's columns per version, sorting and paging; the
organization's actions (connectors, RPC, the MTA service) change the store as the API's do;
the clock page advances the clock; the move form refuses what the API refuses; Delete all
messages of a queue with NDR."""

from __future__ import annotations

import re

import pytest

from mailflow import views
from mailflow.runtime.lab import Lab
from stores import connectors, queue_state, services
from tests.helpers import mailbox, queue_depth
from tests.test_queue_viewer_2003 import BOB, clean_audit, deferred_mail
from tests.test_web_security import client, logged_in


async def text(lab: Lab, path: str) -> str:
    async with client() as session, session.get(lab.http_url + path) as answer:
        assert answer.status == 200, path
        return await answer.text()


async def test_queue_viewer_columns_of_2003(lab: Lab) -> None:
    page = await text(lab, "/queues")
    assert "Number of messages" in page and "Next retry time" in page
    assert "MessageCount" not in page


def table(page: str, family: str) -> str:
    """One family's table of the Queue Viewer page ("viewer" or "hub")."""
    start = page.index(f'id="queues-{family}"')
    return page[start:page.index("</table>", start)]


@pytest.mark.lab(scenario="exchange-2010")
async def test_get_queue_columns_on_2007_and_2010(lab: Lab) -> None:
    """Each server's queues with its version's columns: the 2003 server of the 2010
    organization in Queue Viewer's table, the 2007/2010 servers in Get-Queue's."""
    page = await text(lab, "/queues")
    hub, viewer = table(page, "hub"), table(page, "viewer")
    for heading in ("Identity", "DeliveryType", "NextHopDomain", "Status", "MessageCount",
                    "LastError", "RetryCount", "NextRetryTime"):
        assert f">{heading}</a>" in hub
    assert "Number of messages" not in hub and "Freeze" not in hub
    assert "Suspend" in hub and "EX2010-A\\" in hub
    assert set(servers(hub)) == {"EX2007-A", "EX2010-A", "EX2010-B"}
    assert "Number of messages" in viewer and "MessageCount" not in viewer
    assert "Freeze" in viewer and "Suspend" not in viewer
    assert set(servers(viewer)) == {"EX2003-A"}


@pytest.mark.lab(scenario="exchange-2010")
async def test_suspend_and_resume_a_hub_queue_from_the_page(lab: Lab) -> None:
    queue = "/queues/EX2010-A/mapi:EX2010-A-DB01"
    async with client() as session:
        csrf = await logged_in(lab, session)
        async with session.post(lab.http_url + queue + "/suspend", data={"csrf": csrf}) as a:
            assert a.status == 200
        hub = table(await text(lab, "/queues"), "hub")
        row = hub[hub.index('data-queue="EX2010-A/mapi:EX2010-A-DB01"'):]
        assert '"status">Suspended' in row.split("</tr>")[0]
        assert "Resume mapi:EX2010-A-DB01 on EX2010-A" in row.split("</tr>")[0]
        async with session.post(lab.http_url + queue + "/resume", data={"csrf": csrf}) as a:
            assert a.status == 200
    status = await lab.store.read(
        lambda db: queue_state.status(db, "EX2010-A", "mapi:EX2010-A-DB01"))
    assert status != queue_state.QueueStatus.FROZEN


def servers(page: str) -> list[str]:
    return [q.split("/")[0] for q in re.findall(r'data-queue="([^"]+)"', page)]


async def test_sorting_and_paging(lab: Lab) -> None:
    ascending = servers(await text(lab, "/queues?sort=server&dir=asc"))
    descending = servers(await text(lab, "/queues?sort=server&dir=desc"))
    assert ascending and ascending == sorted(ascending)
    assert descending == sorted(descending, reverse=True)
    assert "Page 1 of 1" in await text(lab, "/queues?page=99")  # clamped to the last page


async def test_organization_actions_change_the_store(lab: Lab) -> None:
    async with client() as session:
        csrf = await logged_in(lab, session)

        async def post(path: str, **fields: str) -> int:
            async with session.post(lab.http_url + path, data={"csrf": csrf, **fields}) as a:
                return a.status

        assert await post("/services/EX2003-A/mta/stop") == 200
        assert not await lab.store.read(lambda db: services.running(db, "EX2003-A", "mta"))
        assert await post("/services/EX2003-A/mta/stop") == 409
        assert await post("/services/EX2003-A/mta/start") == 200
        assert await post("/connectors", type="smtp", site_a="REDMOND", site_b="LONDON",
                          cost="5", name="web") == 200
        added = await lab.store.read(lambda db: connectors.by_name(db, "web"))
        assert added is not None and added.cost == 5
        assert await post("/connectors", type="smtp", site_a="REDMOND", site_b="LONDON",
                          cost="500") == 400
        assert await post(f"/connectors/{added.id}/remove") == 200
        assert await lab.store.read(lambda db: connectors.by_name(db, "web")) is None
        assert await post("/rpc", a="EX2003-A", b="EX2003-B", allowed="false") == 200
        assert await lab.store.read(
            lambda db: connectors.rpc_setting(db, "EX2003-A", "EX2003-B")) is False
        assert await post("/rpc", a="EX2003-A", b="EX2003-B", allowed="perhaps") == 400
        before = lab.clock.now()
        assert await post("/clock/advance", seconds="3600") == 200
        assert lab.clock.now() >= before + 3600


@pytest.mark.lab(scenario="exchange-2010")
async def test_move_form_sends_online_only_when_chosen_and_the_mrs_fields(lab: Lab) -> None:
    async with client() as session:
        csrf = await logged_in(lab, session)
        form = {"csrf": csrf, "mailbox": "frank@contoso.test", "target": "EX2010-B"}
        async with session.post(f"{lab.http_url}/moves", data={**form, "mode": "sideways"}) as a:
            assert a.status == 400 and "mode must be" in await a.text()
        async with session.post(f"{lab.http_url}/moves", data={
                **form, "mode": "offline", "suspend": "on", "suspend_comment": "after hours",
                "batch": "web-batch"}) as answer:
            assert answer.status == 200
            move_id = answer.url.path.rsplit("/", 1)[1]
    move = await lab.store.read(lambda db: views.move(db, move_id, lab.clock.now()))
    assert (move["online"], move["suspend"], move["suspend_comment"], move["batch"]) == (
        False, True, "after hours", "web-batch")
    assert move["status"] == "Suspended"


async def test_delete_all_messages_with_ndr_from_the_queue_page(lab: Lab) -> None:
    ids = await deferred_mail(lab, 2, sender=BOB)
    queue = "/queues/EX2003-A/deferred"
    page = await text(lab, queue)
    assert "Delete all messages (with NDR)" in page and ids[0] in page
    async with client() as session:
        csrf = await logged_in(lab, session)
        async with session.post(lab.http_url + queue + "/delete-all",
                                data={"csrf": csrf, "ndr": "true"}) as answer:
            assert answer.status == 200
        # An empty queue has nothing to delete: a 404 page, not a traceback.
        async with session.post(lab.http_url + queue + "/delete-all",
                                data={"csrf": csrf, "ndr": "false"}) as answer:
            assert answer.status == 404
    await lab.settle()
    assert await queue_depth(lab, "EX2003-A", "deferred") == 0
    assert (await mailbox(lab, BOB))["message_count"] == 2  # one NDR per message
    await clean_audit(lab)
