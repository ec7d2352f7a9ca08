"""The HTTP-client commands import only the client: not the lab, asyncio or the SMTP stacks.

`mailflow queues` must answer well under a second (docs/benchmarks.md, target 4b), and
importing the lab alone took half of that. The commands run here as a user runs them,
against a stub of the lab's API; ``-X importtime`` lists every module they imported.
"""

from __future__ import annotations

import fcntl
import http.server
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailflow.runtime import datadir
from tests.process import MAILFLOW, LabProcess, cli

# Top-level packages and modules that belong to the lab or to the commands that run it.
HEAVY = {"aiohttp", "aiosmtpd", "aiosmtplib", "asyncio", "email_validator", "prometheus_client",
         "routing", "mailflow.runtime.lab", "mailflow.labs", "mailflow.scenarios", "mailflow.smtp",
         "stores.db"}


class _Api(http.server.BaseHTTPRequestHandler):
    """Answers every GET with an empty JSON list: enough for the listing commands."""

    def do_GET(self) -> None:
        body = b"[]"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads the command's output, not the stub's."""


@pytest.fixture
def api() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


@pytest.fixture
def data(tmp_path: Path, api: str) -> Iterator[Path]:
    """A data directory as a running lab leaves it: lab.json, and the lock held."""
    (tmp_path / datadir.LAB_FILE).write_text(json.dumps({"api": api}))
    fd = os.open(tmp_path / datadir.LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield tmp_path
    finally:
        os.close(fd)


def _imported(*args: str) -> tuple[str, set[str]]:
    """Run `mailflow ARGS`; its output and the modules it imported."""
    result = subprocess.run([MAILFLOW[0], "-X", "importtime", *MAILFLOW[1:], *args],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "MAILFLOW_API": ""})
    assert result.returncode == 0, result.stderr
    lines = [line.split("|") for line in result.stderr.splitlines()
             if line.startswith("import time:")]
    return result.stdout, {fields[2].strip() for fields in lines[1:]}  # [0] is the heading


def _heavy(modules: set[str]) -> set[str]:
    return {m for m in modules
            if any(m == h or m.startswith(f"{h}.") for h in HEAVY)}


@pytest.mark.parametrize("args", [["--help"], ["queues", "--help"], ["lab", "--help"],
                                  ["move", "start", "--help"]])
def test_help_imports_only_the_client(args: list[str]) -> None:
    out, modules = _imported(*args)
    assert "usage: mailflow" in out
    assert "mailflow.cli" in modules and not _heavy(modules)


@pytest.mark.parametrize("args", [["queues"], ["move", "list"], ["mailbox", "list"],
                                  ["messages", "--search", "x"],
                                  ["queue", "show", "EX2003-A", "deferred"]])
def test_client_commands_import_only_the_client(args: list[str], data: Path) -> None:
    out, modules = _imported(*args, "--data", str(data))
    assert out == "(none)\n"
    assert "urllib.request" in modules and not _heavy(modules)


def test_lab_list_still_loads_the_labs() -> None:
    out, modules = _imported("lab", "list")
    assert "stuck-rpc-queue" in out and "mailflow.labs" in modules


def test_a_refused_recipient_still_exits_1(tmp_path: Path, lab_process: LabProcess) -> None:
    """aiosmtplib is imported by the commands that speak SMTP, which report its errors."""
    sent = cli(lab_process.data, "send", "--to", "nobody@contoso.test", check=False)
    lab_process.stop()
    assert (sent.returncode, sent.stderr.strip()) == (
        1, "mailflow send: 550 5.1.1 User unknown (RCPT TO nobody@contoso.test)")
    plan = tmp_path / "refused.toml"
    plan.write_text('name = "refused"\ndescription = "sends to nobody"\nscenario = "mixed-2003"\n'
                    '[[steps]]\nsend = { to = "nobody@contoso.test", via = "EX2003-A" }\n')
    ran = subprocess.run([*MAILFLOW, "lab", "run", str(plan)], capture_output=True, text=True,
                         timeout=120)
    assert (ran.returncode, ran.stderr.strip()) == (1, "mailflow lab: a step failed: step 1:"
                                                    " send: 550 5.1.1 User unknown"
                                                    " (RCPT TO nobody@contoso.test)")
