"""The Queue Viewer's weight and first paint with a deep queue, measured in Chromium.

In: ``python -m bench.web_page [--queued 50000] [--runs 3] [--chromium /usr/bin/chromium]``.
Out: on stdout, one JSON document (and a table on stderr) with, for the Queue Viewer's
pages (``/queues`` and the 50,000-deep ``/queues/EX2003-A/deferred``), the bytes the
browser transferred (HTML, the vendored htmx, the stylesheet; no cache; the most of
``runs`` loads) and the first paint in ms (the median of the loads, and the worst).
Targets (issue 21): under 200 KB and 1 s.
How: a lab (mixed-2003) parks a few messages behind a held move, stops; ``stores.bulk``
copies them up to ``queued``; the lab starts again on that store, settles, and Debian's
chromium (Playwright, headless) loads each page once unmeasured, then ``runs`` times.
Not a test: docs/benchmarks.md has the result.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiosmtplib
from playwright.async_api import Browser, async_playwright

from mailflow import scenarios
from mailflow.moves import dispatch as moves
from mailflow.runtime.lab import Lab
from stores.bulk import amplify_queue

ALICE, SOURCE, TARGET = "alice@contoso.test", "EX2003-A", "EX2003-B"
PAGES = ("/queues", f"/queues/{SOURCE}/deferred")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TARGET_BYTES, TARGET_PAINT_MS = 200_000, 1000.0
# What the page loaded and when it first painted, from the browser's own timings.
MEASURE = """() => {
  const entries = performance.getEntriesByType('navigation')
    .concat(performance.getEntriesByType('resource'));
  const paint = performance.getEntriesByType('paint').find(e => e.name === 'first-paint');
  const nav = performance.getEntriesByType('navigation')[0];
  const total = document.getElementById('queued-total');
  return {bytes: entries.reduce((n, e) => n + e.transferSize, 0), html: nav.transferSize,
          response_ms: nav.responseEnd,
          rows: document.querySelectorAll('tr[data-message], tr[data-queue]').length,
          queued: total ? Number(total.textContent) : null,
          first_paint_ms: paint ? paint.startTime : null};
}"""


def build(data: Path) -> Lab:
    return Lab(scenarios.load("mixed-2003"), data, speed=0, http=("127.0.0.1", 0),
               smtp_port_override=0)


async def park(data: Path, messages: int) -> None:
    """A held move of alice and ``messages`` messages for her, parked in deferred."""
    lab = build(data)
    await lab.start()
    try:
        await lab.store.write(lambda tx: moves.start(
            tx, lab.scenario, ALICE, TARGET, moves.MoveRequest(hold=True)))
        # Held (copied, waiting for "complete"): a held move survives the restart.
        await lab.advance(lab.scenario.defaults.move_base_seconds)
        host, port = lab.endpoint_address(SOURCE)
        for n in range(messages):
            body = f"Subject: parked {n}\r\n\r\nHello.\r\n".encode()
            await aiosmtplib.send(body, sender="bench@example.net", recipients=[ALICE],
                                  hostname=host, port=port)
        await lab.settle()
    finally:
        await lab.stop()


async def load(browser: Browser, base: str, path: str) -> dict[str, Any]:
    """One load in a tab that already shows a page of the lab (so the renderer process is
    up, as when a user goes from page to page), with the browser cache off."""
    context = await browser.new_context()
    try:
        page = await context.new_page()
        await page.goto(base + "/healthz")
        cdp = await context.new_cdp_session(page)
        await cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
        await page.goto(base + path, wait_until="load")
        result: dict[str, Any] = await page.evaluate(MEASURE)
        return result
    finally:
        await context.close()


async def measure(data: Path, chromium: str, runs: int) -> dict[str, Any]:
    lab = build(data)
    await lab.start()
    await lab.settle()  # what the restart made due has run: a lab as a user finds it
    try:
        async with async_playwright() as driver:
            browser = await driver.chromium.launch(executable_path=chromium, args=ARGS)
            found = {}
            for path in PAGES:
                await load(browser, lab.http_url, path)  # warm-up, not counted
                loads = [await load(browser, lab.http_url, path) for _ in range(runs)]
                paints = sorted(x["first_paint_ms"] or 0.0 for x in loads)
                found[path] = {"bytes": max(x["bytes"] for x in loads),
                               "html_bytes": max(x["html"] for x in loads),
                               "response_ms": [round(x["response_ms"]) for x in loads],
                               "first_paint_ms": paints[len(paints) // 2],
                               "first_paint_max_ms": paints[-1],
                               "rows": min(x["rows"] for x in loads),
                               "queued": loads[0]["queued"]}
            await browser.close()
        return found
    finally:
        await lab.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queued", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        asyncio.run(park(data, 20))
        queued = amplify_queue(data / "mailflow.db", options.queued)
        pages = asyncio.run(measure(data, options.chromium, options.runs))
    if pages[PAGES[0]]["queued"] < queued or pages[PAGES[1]]["rows"] < 50:
        raise SystemExit(f"the deep queue was not there to measure: {pages}")
    ok = all(p["bytes"] < TARGET_BYTES and p["first_paint_ms"] < TARGET_PAINT_MS
             for p in pages.values())
    for path, p in pages.items():
        print(f"{path}: {p['bytes'] / 1000:.1f} KB ({p['html_bytes'] / 1000:.1f} KB HTML),"
              f" first paint median {p['first_paint_ms']:.0f} ms, max {p['first_paint_max_ms']:.0f}"
              f" (HTML in {p['response_ms']} ms)", file=sys.stderr)
    print(json.dumps({"queued": queued, "runs": options.runs, "pages": pages, "ok": ok,
                      "load_average": os.getloadavg()}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
