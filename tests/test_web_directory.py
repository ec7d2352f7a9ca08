"""The directory replicas (ADC) and databases (DAG) pages: in Chromium, each renders the
lab's state and an action from it takes effect after the login; over real HTTP, the same
actions are refused without a login or CSRF token and change nothing; a mailbox's
directory object is shown side by side in every replica, linked from the mailbox page."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Page, expect

from mailflow.actions import databases as dag
from mailflow.actions import directory
from mailflow.runtime.lab import Lab
from mailflow.web.common import simtime
from tests.test_web_pages import text
from tests.test_web_security import client, logged_in
from tests.web import browser, login, page, shoot

__all__ = ["browser", "page"]  # the fixtures, used by name
DAVE = "dave@contoso.test"


async def adc_running(lab: Lab) -> bool:
    status = await lab.store.read(lambda db: directory.status(db, lab.scenario))
    return bool(status["running"])


async def test_adc_page_shows_agreements_and_runs_one(lab: Lab, page: Page) -> None:
    await login(page, lab)
    await page.goto(f"{lab.http_url}/adc")
    rows = page.locator("#agreements tbody tr")
    await expect(rows).to_have_count(2)
    await expect(page.locator('[data-agreement="REDMOND CA"]')).to_contain_text("REDMOND")
    await expect(page.locator("#adc-running")).to_have_text("running")
    await shoot(page, "adc")
    async with page.expect_navigation():
        await page.get_by_role("button", name="Replicate now REDMOND CA").click()
    status = await lab.store.read(lambda db: directory.status(db, lab.scenario))
    ran = next(a for a in status["agreements"] if a["name"] == "REDMOND CA")
    assert ran["last_run"] is not None and ran["pending_changes"] == 0
    await expect(page.locator('[data-agreement="REDMOND CA"]')).to_contain_text(
        simtime(ran["last_run"]))

    await page.goto(f"{lab.http_url}/mailboxes/{DAVE}")
    await page.locator("#mailbox-directory").click()
    await expect(page.locator("#replicas thead th")).to_have_text(
        ["Attribute", "AD", "LONDON", "REDMOND"])
    await expect(page.locator('[data-attribute="state"] td')).to_have_text(
        ["present", "present", "present"])
    await shoot(page, "directory")


async def test_adc_stop_and_start_need_the_login_and_csrf(lab: Lab) -> None:
    async with client() as session:
        async with session.post(f"{lab.http_url}/adc/stop") as answer:
            assert answer.status == 401
        assert await adc_running(lab)
        csrf = await logged_in(lab, session)
        async with session.post(f"{lab.http_url}/adc/stop", data={"csrf": "forged"}) as a:
            assert a.status == 403
        assert await adc_running(lab)
        async with session.post(f"{lab.http_url}/adc/stop", data={"csrf": csrf}) as answer:
            assert answer.status == 200 and "Start the ADC" in await answer.text()
        assert not await adc_running(lab)
        async with session.post(f"{lab.http_url}/adc/run", data={"csrf": csrf,
                                                                 "agreement": "NOWHERE"}) as a:
            assert a.status == 404 and "no connection agreement" in await a.text()
        async with session.post(f"{lab.http_url}/adc/start", data={"csrf": csrf}) as answer:
            assert answer.status == 200
        assert await adc_running(lab)


async def test_directory_find_goes_to_the_object_and_an_unknown_one_is_404(lab: Lab) -> None:
    async with client() as session:
        async with session.get(f"{lab.http_url}/directory?address={DAVE}") as answer:
            assert answer.status == 200 and answer.url.path == f"/directory/{DAVE}"
        async with session.get(f"{lab.http_url}/directory/nobody@contoso.test") as answer:
            assert answer.status == 404


@pytest.mark.lab(scenario="exchange-2010")
async def test_an_organization_without_55_has_no_adc(lab: Lab) -> None:
    assert "no Exchange 5.5 server" in await text(lab, "/adc")


COPY = '[data-copy="DAG-DB01\\\\EX2010-D1"]'


async def copy_of(lab: Lab, server: str) -> dict[str, object]:
    doc = await lab.store.read(lambda db: dag.show(db, "DAG-DB01"))
    return next(c for c in doc["copies"] if c["server"] == server)


@pytest.mark.lab(scenario="exchange-2010-dag")
async def test_databases_page_shows_copies_and_suspends_one(lab: Lab, page: Page) -> None:
    await login(page, lab)
    await page.goto(f"{lab.http_url}/databases")
    section = page.locator('[data-database="DAG-DB01"]')
    await expect(section.locator(".mounted")).to_have_text("mounted")
    await expect(page.locator(f"{COPY} .status")).to_have_text("Healthy")
    await page.get_by_label("Copy queue length of DAG-DB01\\EX2010-D1").fill("12")
    await page.get_by_role("button", name="Set the lag of DAG-DB01\\EX2010-D1").click()
    await expect(page.locator(f"{COPY} .copy-queue")).to_have_text("12")
    await page.get_by_role("button", name="Suspend DAG-DB01\\EX2010-D1").click()
    await expect(page.locator(f"{COPY} .status")).to_have_text("Suspended")
    assert (await copy_of(lab, "EX2010-D1"))["status"] == "Suspended"
    await shoot(page, "databases")


@pytest.mark.lab(scenario="exchange-2010-dag")
async def test_database_actions_need_the_login_and_refuse_bad_input(lab: Lab) -> None:
    lag = f"{lab.http_url}/databases/DAG-DB01/copies/EX2010-D1/lag"
    async with client() as session:
        async with session.post(lag, data={"copy_queue_length": "5"}) as answer:
            assert answer.status == 401
        assert (await copy_of(lab, "EX2010-D1"))["copy_queue_length"] == 0
        csrf = await logged_in(lab, session)
        async with session.post(lag, data={"csrf": csrf, "copy_queue_length": "-1"}) as a:
            assert a.status == 400
        async with session.post(lag, data={"csrf": csrf, "copy_queue_length": "5",
                                           "replay_queue_length": "3"}) as answer:
            assert answer.status == 200
        copy = await copy_of(lab, "EX2010-D1")
        assert (copy["copy_queue_length"], copy["replay_queue_length"]) == (5, 3)
        dismount = f"{lab.http_url}/databases/DAG-DB01/dismount"
        async with session.post(dismount, data={"csrf": csrf}) as answer:
            page = await answer.text()
            assert answer.status == 200 and re.search(r'class="mounted">dismounted', page)
        async with session.post(dismount, data={"csrf": csrf}) as answer:
            assert answer.status == 409
        async with session.post(f"{lab.http_url}/databases/DAG-DB01/mount",
                                data={"csrf": csrf}) as answer:
            assert answer.status == 200
        failover = f"{lab.http_url}/databases/DAG-DB01/failover"
        async with session.post(failover, data={"csrf": csrf, "server": "NOWHERE"}) as answer:
            assert answer.status == 404
        async with session.post(failover, data={"csrf": csrf, "server": "EX2010-R2"}) as answer:
            assert answer.status == 200 and 'class="active-server">EX2010-R2' in await answer.text()
    doc = await lab.store.read(lambda db: dag.show(db, "DAG-DB01"))
    assert doc["mounted"] and doc["active_server"] == "EX2010-R2"
