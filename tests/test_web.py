"""The web interface in a real Chromium: a held move started from the form parks mail sent
with swaks, the Queue Viewer's count rises without a reload (SSE), freeze and thaw from the
page take effect, completing the move from the page drains the queue, the mailbox page
shows the delivered messages, and a subject ``<script>`` is shown as text."""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import Page, expect

from mailflow.runtime.lab import Lab
from stores import queue_state
from stores.queue_state import QueueStatus
from tests.conftest import require_tool
from tests.web import browser, login, page, shoot

__all__ = ["browser", "page"]  # the fixtures, used by name
DEFERRED_ROW = '[data-queue="EX2003-A/deferred"]'


async def swaks(lab: Lab, to: str, subject: str) -> None:
    host, port = lab.endpoint_address("EX2003-A")
    proc = await asyncio.create_subprocess_exec(
        require_tool("swaks"), "--to", to, "--from", "tester@example.net", "--server", host,
        "--port", str(port), "--helo", "swaks.example.net", "--header", f"Subject: {subject}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, out.decode() + err.decode()
    await lab.settle()


async def start_held_move(page: Page, lab: Lab) -> str:
    await page.goto(f"{lab.http_url}/moves")
    await page.locator("#move-mailbox").select_option("alice@contoso.test")
    await page.locator("#move-target").select_option("EX2003-B")
    await page.locator("#move-hold").check()
    await shoot(page, "moves")
    await page.get_by_role("button", name="Start move").click()
    await expect(page.locator("#move-status")).to_have_text("InProgress")
    return page.url.rsplit("/", 1)[1]


async def queue_status(lab: Lab) -> QueueStatus:
    return await lab.store.read(lambda db: queue_state.status(db, "EX2003-A", "deferred"))


async def test_held_move_live_queue_freeze_thaw_complete(lab: Lab, page: Page) -> None:
    await login(page, lab)
    await shoot(page, "organization")
    move_id = await start_held_move(page, lab)
    await page.goto(f"{lab.http_url}/queues")
    count = page.locator(f"{DEFERRED_ROW} .count")
    await expect(count).to_have_text("0")
    await page.evaluate("window.notReloaded = true")
    await swaks(lab, "alice@contoso.test", "<script>")
    await expect(count).to_have_text("1")
    await swaks(lab, "alice@contoso.test", "second while held")
    await expect(count).to_have_text("2")
    assert await page.evaluate("window.notReloaded === true")  # live, not a reload
    await shoot(page, "queue-viewer")

    await page.get_by_role("button", name="Freeze deferred on EX2003-A").click()
    await expect(page.locator(f"{DEFERRED_ROW} .status")).to_have_text("Frozen")
    assert await queue_status(lab) == QueueStatus.FROZEN
    await page.get_by_role("button", name="Unfreeze deferred on EX2003-A").click()
    await expect(page.locator(f"{DEFERRED_ROW} .status")).not_to_have_text("Frozen")
    assert await queue_status(lab) != QueueStatus.FROZEN

    await page.goto(f"{lab.http_url}/queues/EX2003-A/deferred")
    await expect(page.locator("td.subject").first).to_have_text("<script>")
    await shoot(page, "queue")
    await page.goto(f"{lab.http_url}/clock")
    await page.get_by_label("Seconds").fill(str(lab.scenario.defaults.move_base_seconds))
    await page.get_by_role("button", name="Advance").click()
    await shoot(page, "clock")
    await page.goto(f"{lab.http_url}/moves/{move_id}")
    await page.get_by_role("button", name="Complete move").click()
    await expect(page.locator("#move-status")).to_have_text("Completed")
    await shoot(page, "move")

    await page.goto(f"{lab.http_url}/queues")
    await expect(page.locator(f"{DEFERRED_ROW} .count")).to_have_text("0")
    await page.goto(f"{lab.http_url}/mailboxes/alice@contoso.test")
    subjects = page.locator("td.subject")
    await expect(subjects).to_contain_text(["<script>", "second while held"])
    assert await page.locator("main script").count() == 0
    await page.evaluate("document.querySelector('td.subject').scrollIntoView()")
    await shoot(page, "mailbox")
    await subjects.first.locator("xpath=..").get_by_role("link").click()
    await expect(page.locator("#message-subject")).to_have_text("<script>")
    await expect(page.locator("ol.timeline")).to_contain_text("delivered")
    await shoot(page, "message")
    await page.goto(f"{lab.http_url}/events")
    await shoot(page, "events")


@pytest.mark.lab(scenario="exchange-2010")
async def test_each_version_family_has_its_own_table(lab: Lab, page: Page) -> None:
    """The 2010 organization's 2003 server in Queue Viewer's table, the others in Get-Queue's,
    each sorted by the chosen column."""
    await page.goto(f"{lab.http_url}/queues?sort=message_count&dir=desc")
    hub = page.locator("#queues-hub")
    await expect(hub.locator("thead th")).to_have_text(
        ["Identity", "DeliveryType", "NextHopDomain", "Status", "MessageCount", "LastError",
         "RetryCount", "NextRetryTime", "Actions"])
    await expect(hub.locator('[data-queue="EX2010-A/mapi:EX2010-A-DB01"] td').nth(1)).to_have_text(
        "MapiDelivery")
    await expect(page.locator("#queues-viewer tbody tr").first).to_contain_text("EX2003-A")
    await page.evaluate("document.querySelector('#hub-heading').scrollIntoView()")
    await shoot(page, "get-queue")
