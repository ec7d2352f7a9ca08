"""The web interface's guard, over real HTTP: login and its HttpOnly SameSite=Strict cookie,
CSRF on every POST, the Content-Security-Policy, readable 4xx pages, token-for-reads, the
Host check; and in Chromium, an action without login refused and nothing changed."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Page, expect

from mailflow import scenarios, views
from mailflow.moves import dispatch as moves
from mailflow.runtime.lab import Lab
from stores import moves as stored_moves
from stores import queue_state
from stores.queue_state import QueueStatus
from tests.helpers import queue_id, send
from tests.web import browser, page

__all__ = ["browser", "page"]  # the fixtures, used by name
FREEZE = "/queues/EX2003-A/deferred/freeze"


def client() -> aiohttp.ClientSession:
    # Browsers keep cookies of IP-address hosts; aiohttp's jar does only when told to.
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def logged_in(lab: Lab, session: aiohttp.ClientSession) -> str:
    """Log in; returns the CSRF token the pages carry."""
    async with session.post(f"{lab.http_url}/login", data={"token": lab.token},
                            allow_redirects=False) as answer:
        assert answer.status == 303
        cookie = answer.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    async with session.get(f"{lab.http_url}/queues") as answer:
        found = re.search(r'name="csrf" value="([^"]+)"', await answer.text())
    assert found is not None
    return found.group(1)


async def frozen(lab: Lab) -> bool:
    status = await lab.store.read(lambda db: queue_state.status(db, "EX2003-A", "deferred"))
    return status == QueueStatus.FROZEN


async def test_every_post_needs_a_session_and_its_csrf_token(lab: Lab) -> None:
    async with client() as session:
        async with session.post(lab.http_url + FREEZE) as answer:
            assert answer.status == 401 and "log in first" in await answer.text()
        for method in ("PUT", "DELETE"):  # no page takes them
            async with session.request(method, lab.http_url + FREEZE) as answer:
                assert answer.status == 405
        csrf = await logged_in(lab, session)
        for wrong in ({}, {"csrf": "forged"}):
            async with session.post(lab.http_url + FREEZE, data=wrong) as answer:
                assert answer.status == 403 and "CSRF" in await answer.text()
        assert not await frozen(lab)
        async with session.post(lab.http_url + FREEZE, data={"csrf": csrf}) as answer:
            assert answer.status == 200
        assert await frozen(lab)
        async with session.post(f"{lab.http_url}/logout", data={"csrf": csrf}) as answer:
            assert answer.status == 200
        async with session.post(lab.http_url + FREEZE.replace("freeze", "thaw"),
                                data={"csrf": csrf}) as answer:
            assert answer.status == 401  # the session is gone with the logout
    assert await frozen(lab)


async def test_a_wrong_token_does_not_log_in(lab: Lab) -> None:
    async with client() as session, session.post(
            f"{lab.http_url}/login", data={"token": "guess"}, allow_redirects=False) as answer:
        assert answer.status == 401 and "Set-Cookie" not in answer.headers


@pytest.mark.parametrize(("path", "status", "text"), [
    ("/queues/EX2003-A/defered", 404, "no queue &#39;defered&#39; on EX2003-A"),
    ("/queues?sort=colour", 400, "sort must be one of"),
    ("/queues?page=0", 400, "page must be"),
    ("/moves/nope", 404, "no move &#39;nope&#39;"),
    ("/mailboxes/nobody@contoso.test", 404, "no mailbox"),
    ("/messages/%3Cscript%3E", 404, "no message &#39;&lt;script&gt;&#39;"),
    ("/no/such/page", 404, "Not Found"),
])
async def test_bad_input_is_a_readable_page_with_the_policy(lab: Lab, path: str, status: int,
                                                          text: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(
            lab.http_url + path, headers={"Accept": "text/html"}) as answer:  # a browser's
        body = await answer.text()
        assert answer.status == status and text in body and "Traceback" not in body
        assert answer.content_type == "text/html"
        policy = answer.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        assert "<title>" in body


async def test_bad_form_input_is_400_and_changes_nothing(lab: Lab) -> None:
    async with client() as session:
        csrf = await logged_in(lab, session)
        for fields in ({"mailbox": "alice@contoso.test", "target": "EX2003-B",
                        "bad_items": "-1"},
                       {"mailbox": "alice@contoso.test", "target": "EX2003-B",
                        "fail_at": "bogus"},
                       {"mailbox": "alice@contoso.test", "target": "EX2003-A"}):
            async with session.post(f"{lab.http_url}/moves",
                                    data={"csrf": csrf, **fields}) as answer:
                assert answer.status == 400, fields
        assert await lab.store.read(lambda db: stored_moves.page(db, 10, 0)) == []
        async with session.post(f"{lab.http_url}/clock/advance",
                                data={"csrf": csrf, "seconds": "-5"}) as answer:
            assert answer.status == 400 and "seconds must be" in await answer.text()


async def test_token_for_reads_asks_for_the_login(tmp_path: Path) -> None:
    lab = Lab(scenarios.load("mixed-2003"), tmp_path / "data", speed=0, smtp_port_override=0,
              http=("127.0.0.1", 0), token_for_reads=True)
    await lab.start()
    try:
        async with client() as session:
            async with session.get(f"{lab.http_url}/queues", allow_redirects=False) as answer:
                assert answer.status == 303
                assert answer.headers["Location"] == "/login?next=/queues"
            await logged_in(lab, session)
            async with session.get(f"{lab.http_url}/queues") as answer:
                assert answer.status == 200
    finally:
        await lab.stop()


async def test_a_foreign_host_is_refused(lab: Lab) -> None:
    async with aiohttp.ClientSession() as session, session.get(
            f"{lab.http_url}/queues", headers={"Host": "evil.example"}) as answer:
        assert answer.status == 421


async def test_an_action_without_login_is_refused_in_the_browser(lab: Lab, page: Page) -> None:
    await page.goto(f"{lab.http_url}/moves")
    await page.get_by_role("button", name="Start move").click()
    await expect(page.locator("p.error")).to_contain_text("log in first")
    await expect(page).to_have_title(re.compile("Error 401"))
    assert await lab.store.read(lambda db: stored_moves.page(db, 10, 0)) == []


PAGES = ("/", "/queues", "/queues/EX2003-A/deferred", "/find?search=alice", "/moves",
         "/mailboxes", "/mailboxes/alice@contoso.test", "/events", "/clock", "/adc",
         "/directory/alice@contoso.test", "/databases", "/login")


async def test_every_page_has_a_title_a_skip_link_and_breaks_no_policy(lab: Lab,
                                                                      page: Page) -> None:
    refused: list[str] = []
    page.on("console", lambda message: refused.append(message.text)
            if "Content Security Policy" in message.text else None)
    for path in PAGES:
        await page.goto(lab.http_url + path)
        assert re.fullmatch(r".+ · mailflow mixed-2003", await page.title()), path
        if path == "/login":  # the token field has the focus, to type at once
            assert await page.evaluate("document.activeElement.id") == "token"
            continue
        await page.keyboard.press("Tab")
        focused = await page.evaluate("document.activeElement.textContent")
        assert focused == "Skip to content", path
        await page.keyboard.press("Enter")
        assert await page.evaluate("document.activeElement.id") == "main", path
    assert refused == []


async def test_disable_outbound_and_delete_with_ndr_from_the_pages(lab: Lab) -> None:
    async with client() as session:
        csrf = await logged_in(lab, session)
        url = f"{lab.http_url}/servers/EX2003-A/disable-outbound"
        async with session.post(url, data={"csrf": csrf}) as answer:
            assert answer.status == 200 and "Enable outbound mail" in await answer.text()
        assert await lab.store.read(lambda db: queue_state.outbound_disabled(db, "EX2003-A"))
        async with session.post(url, data={"csrf": csrf}) as answer:
            assert answer.status == 409 and "already disabled" in await answer.text()
        await lab.store.write(lambda tx: moves.start(tx, lab.scenario, "alice@contoso.test",
                                                     "EX2003-B", moves.MoveRequest(hold=True)))
        parked = queue_id(await send(lab, "EX2003-A", "alice@contoso.test"))
        await lab.settle()
        delete = f"{lab.http_url}/queues/EX2003-A/deferred/messages/{parked}/delete"
        async with session.post(delete, data={"csrf": csrf, "ndr": "maybe"}) as answer:
            assert answer.status == 400 and "ndr must be true or false" in await answer.text()
        async with session.post(delete, data={"csrf": csrf, "ndr": "true"}) as answer:
            assert answer.status == 200
        message = await lab.store.read(lambda db: views.message(db, parked))
        assert [r["state"] for r in message["recipients"]] == ["deleted"]
        assert len(message["dsns"]) == 1
