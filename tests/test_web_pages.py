"""The pages over real HTTP: the Queue Viewer's columns per version, sorting and paging; the
organization's actions (connectors, RPC, the MTA service) change the store as the API's do;
the clock page advances the clock; the move form refuses what the API refuses."""

from __future__ import annotations

import re

import pytest

from mailflow.runtime.lab import Lab
from stores import connectors, services
from tests.test_web_security import client, logged_in


async def text(lab: Lab, path: str) -> str:
    async with client() as session, session.get(lab.http_url + path) as answer:
        assert answer.status == 200, path
        return await answer.text()


async def test_queue_viewer_columns_of_2003(lab: Lab) -> None:
    page = await text(lab, "/queues")
    assert "Number of messages" in page and "Next retry time" in page
    assert "MessageCount" not in page


@pytest.mark.lab(scenario="exchange-2010")
async def test_get_queue_columns_on_2007_and_2010(lab: Lab) -> None:
    page = await text(lab, "/queues")
    assert "MessageCount" in page and "NextRetryTime" in page and "Identity" in page
    assert "Number of messages" not in page
    assert "Suspend" in page and "Freeze" not in page


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
