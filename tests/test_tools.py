"""Real outside tools against a real lab: swaks sends the mail, promtool checks /metrics."""

from __future__ import annotations

import asyncio
import subprocess

from mailflow.runtime.lab import Lab
from tests.conftest import require_tool
from tests.helpers import api, queue_depth, scrape


async def _swaks(swaks: str, lab: Lab, server: str, to: str) -> str:
    host, port = lab.endpoint_address(server)
    proc = await asyncio.create_subprocess_exec(
        swaks, "--to", to, "--from", "tester@example.net", "--server", host, "--port", str(port),
        "--helo", "swaks.example.net", "--header", "Subject: sent with swaks",
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()
    return out.decode()


async def test_swaks_delivers_and_defers(lab: Lab) -> None:
    swaks = require_tool("swaks")
    transcript = await _swaks(swaks, lab, "EX2003-A", "alice@contoso.test")
    assert "<-  250 2.6.0" in transcript and "Queued mail for delivery" in transcript
    await _swaks(swaks, lab, "EX2003-A", "carol@contoso.test")
    await lab.settle()
    _, carol = await api(lab, "GET", "/api/v1/mailboxes/carol@contoso.test")
    assert (carol["server"], carol["message_count"]) == ("EX2003-B", 1)

    _, move = await api(lab, "POST", "/api/v1/moves",
                        {"mailbox": "alice@contoso.test", "target": "EX2003-B", "hold": True})
    await _swaks(swaks, lab, "EX2003-A", "alice@contoso.test")
    await lab.settle()
    assert await queue_depth(lab, "EX2003-A", "deferred") == 1
    await api(lab, "POST", f"/api/v1/moves/{move['id']}/complete")
    await lab.settle()
    _, alice = await api(lab, "GET", "/api/v1/mailboxes/alice@contoso.test")
    assert (alice["server"], alice["message_count"]) == ("EX2003-B", 2)


async def test_swaks_is_refused_relay(lab: Lab) -> None:
    swaks = require_tool("swaks")
    host, port = lab.endpoint_address("EX2003-A")
    proc = await asyncio.create_subprocess_exec(
        swaks, "--to", "victim@example.org", "--server", host, "--port", str(port),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode != 0
    assert "<** 550 5.7.1 Unable to relay" in out.decode()


async def test_promtool_accepts_metrics(lab: Lab) -> None:
    promtool = require_tool("promtool")
    status, _ = await api(lab, "POST", "/api/v1/moves",
                          {"mailbox": "alice@contoso.test", "target": "EX2003-B", "hold": True})
    assert status == 201
    text = await scrape(lab)
    assert 'mailflow_mailboxes_in_transit{server="EX2003-A"} 1.0' in text
    proc = await asyncio.create_subprocess_exec(
        promtool, "check", "metrics", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out, _ = await proc.communicate(text.encode())
    assert proc.returncode == 0, out.decode()
