"""The shipped Prometheus files against the real tools: promtool checks the config and runs
the alert unit tests, and a real Prometheus scrapes a lab with a held move and a stuck RPC
queue and evaluates every expression of the Grafana dashboard."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from mailflow.runtime.lab import Lab
from tests.conftest import require_tool
from tests.helpers import api, hold_move, queue_depth, send

PROMETHEUS_DIR = Path(__file__).resolve().parent.parent / "grafana" / "prometheus"
DASHBOARD = PROMETHEUS_DIR.parent / "dashboards" / "mailflow.json"
ALERTS = {"MailflowRPCQueueStuck", "MailflowDeferredQueueGrowing",
          "MailflowMessagesAgingInQueue", "MailflowMoveFailed", "MailflowMailboxInTransitTooLong",
          "MailflowMoveStalledByHA"}
# Prometheus starts in about a second and scrapes every second here.
DEADLINE_SECONDS = 20.0
POLL_SECONDS = 0.2


def _promtool(*args: str) -> str:
    proc = subprocess.run([require_tool("promtool"), *args], capture_output=True, text=True,
                          cwd=PROMETHEUS_DIR, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_promtool_checks_the_config_and_its_rules() -> None:
    out = _promtool("check", "config", "prometheus.yml")
    assert "SUCCESS: 1 rule files found" in out
    assert "SUCCESS: 6 rules found" in _promtool("check", "rules", "alerts.yml")


def test_promtool_alert_unit_tests_pass() -> None:
    assert "SUCCESS" in _promtool("test", "rules", "alerts_test.yml")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _config_for(lab: Lab, directory: Path) -> Path:
    """The shipped scrape config, aimed at this lab and scraping every second."""
    text = (PROMETHEUS_DIR / "prometheus.yml").read_text()
    target = lab.http_url.removeprefix("http://")
    for old, new in (('"127.0.0.1:8025"', f'"{target}"'), ("scrape_interval: 15s",
                     "scrape_interval: 1s"), ("evaluation_interval: 15s",
                     "evaluation_interval: 1s")):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    shutil.copy(PROMETHEUS_DIR / "alerts.yml", directory / "alerts.yml")
    config = directory / "prometheus.yml"
    config.write_text(text)
    return config


@contextlib.asynccontextmanager
async def _prometheus(lab: Lab, tmp_path: Path) -> AsyncIterator[str]:
    binary = require_tool("prometheus")
    port = _free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        binary, f"--config.file={_config_for(lab, tmp_path)}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}",
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        log.close()


async def _get(session: aiohttp.ClientSession, url: str, **params: str) -> Any:
    async with session.get(url, params=params) as response:
        doc = await response.json()
    assert doc["status"] == "success", doc
    return doc["data"]


async def _query(session: aiohttp.ClientSession, base: str, expr: str) -> list[dict[str, Any]]:
    data = await _get(session, f"{base}/api/v1/query", query=expr)
    assert data["resultType"] == "vector", (expr, data)
    return list(data["result"])


async def _until(session: aiohttp.ClientSession, base: str, expr: str, value: float) -> None:
    """Poll Prometheus until ``expr`` has one sample equal to ``value``."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    got: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(f"{base}/api/v1/query", params={"query": expr}) as r:
                doc = await r.json() if r.status == 200 else {}
            got = [float(s["value"][1]) for s in doc.get("data", {}).get("result", [])]
            if got == [value]:
                return
        await asyncio.sleep(POLL_SECONDS)
    raise AssertionError(f"{expr}: Prometheus had {got}, not [{value}], after {DEADLINE_SECONDS}s")


def _dashboard_exprs() -> dict[str, list[str]]:
    """Each panel's expressions, with Grafana's variables as the issue says: `.*`, and 1m."""
    doc = json.loads(DASHBOARD.read_text())
    variables = re.compile(r"\$(?:\{(?:server|queue)\}|server\b|queue\b)")
    return {
        p["title"]: [variables.sub(".*", t["expr"].replace("$__rate_interval", "1m"))
                     for t in p["targets"]]
        for p in doc["panels"]
    }


def _value(result: list[dict[str, Any]], **labels: str) -> float:
    values = [float(s["value"][1]) for s in result
              if all(s["metric"].get(k) == v for k, v in labels.items())]
    assert len(values) == 1, (labels, result)
    return values[0]


async def test_dashboard_queries_on_a_real_prometheus(lab: Lab, tmp_path: Path) -> None:
    interval = lab.scenario.defaults.mta_open_interval_seconds
    async with _prometheus(lab, tmp_path) as base, aiohttp.ClientSession() as session:
        # A held 2003 move with parked mail, and seed 003: a 5.5 move whose mail sticks.
        await hold_move(lab, "alice@contoso.test", "EX2003-B")
        for n in range(3):
            await send(lab, "EX2003-A", "alice@contoso.test", subject=f"parked {n}")
        dave = await hold_move(lab, "dave@contoso.test", "EX2003-A")
        await send(lab, "EX55-LON", "dave@contoso.test")
        await api(lab, "POST", f"/api/v1/moves/{dave}/complete")
        await lab.settle()
        assert await queue_depth(lab, "EX2003-A", "deferred") == 3
        assert await queue_depth(lab, "EX55-LON", "mta:EX2003-A") == 1

        depth = 'mailflow_queue_messages{server="EX2003-A", queue="deferred"}'
        failures = 'sum(mailflow_mta_connection_failures_total{server="EX55-LON"})'
        await _until(session, base, depth, 3)
        await _until(session, base, failures, 2)  # one open: 9318 and 9322
        await lab.advance(interval)  # the next open fails too: the failures increase
        await _until(session, base, failures, 4)

        # Every expression must evaluate; the first one of a panel is checked for values.
        by_title = {}
        for title, panel_exprs in _dashboard_exprs().items():
            results = [await _query(session, base, expr) for expr in panel_exprs]
            by_title[title] = results[0]
        assert _value(by_title["Queue depth"], server="EX2003-A", queue="deferred") == 3
        assert _value(by_title["Queue depth"], server="EX55-LON", queue="mta:EX2003-A") == 1
        assert _value(by_title["Queued recipients"]) == 4
        assert _value(by_title["Stuck RPC queues"]) == 1
        assert _value(by_title["Mailboxes in transit"], server="EX2003-A") == 1
        assert _value(by_title["Moves by status"], status="InProgress") == 1
        assert _value(by_title["Age of queued mail (qshape)"], le="+Inf") == 4

        rules = await _get(session, f"{base}/api/v1/rules")
        loaded = {r["name"]: r for g in rules["groups"] for r in g["rules"]}
        assert set(loaded) == ALERTS
        for rule in loaded.values():
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert "site connector" in loaded["MailflowRPCQueueStuck"]["annotations"]["description"]
