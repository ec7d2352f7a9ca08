"""A lab in its own process, as users run it: `mailflow run`, killed and restarted at will."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp

from tests import pg

MAILFLOW = [sys.executable, "-m", "mailflow"]


def ephemeral_scenario(directory: Path, name: str = "mixed-2003") -> Path:
    """A built-in scenario with every SMTP port picked by the system."""
    text = resources.files("mailflow.scenarios").joinpath(f"{name}.toml").read_text()
    path = directory / f"{name}.toml"
    path.write_text(re.sub(r"smtp_port = \d+", "smtp_port = 0", text))
    return path


def wait_started(proc: subprocess.Popen[str], ready: Callable[[], bool],
                 timeout: float = 30.0) -> None:
    """Poll until ``ready()``: bounded waiting for a process's start-up, not for a schedule.
    Fails if ``proc`` exits first (with its stderr) or after ``timeout`` real seconds."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"the lab exited: {proc.communicate()[1]}")
        if time.monotonic() > deadline:
            raise AssertionError("the lab did not start")
        time.sleep(0.02)


def cli(data: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one `mailflow` command against the lab of ``data``, as a user would."""
    result = subprocess.run([*MAILFLOW, *args, "--data", str(data)], capture_output=True,
                            text=True, timeout=60)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def mailbox_once(data: Path, address: str, count: int) -> dict[str, Any]:
    """``mailflow mailbox show ADDRESS --json`` once the mailbox holds ``count`` messages.
    After `move complete` the released mail still crosses the SMTP hop, so this waits for
    that relay (up to 30 s), not for a schedule."""
    deadline = time.monotonic() + 30
    while True:
        shown: dict[str, Any] = json.loads(
            cli(data, "mailbox", "show", address, "--json").stdout)
        if shown["message_count"] >= count or time.monotonic() > deadline:
            return shown
        time.sleep(0.05)


class LabProcess:
    """``mailflow run`` in a process of its own; with ``store`` and ``servers``, one process
    of a lab spread over several on that PostgreSQL database (``scenario`` shared)."""

    def __init__(self, directory: Path, *, speed: str = "0", scenario: Path | None = None,
                 store: str | None = None, servers: str | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.scenario = scenario or ephemeral_scenario(directory)
        self.data = directory / "data"
        self.speed = speed
        self.store = store
        self.servers = servers
        self.proc: subprocess.Popen[str] | None = None
        self.info: dict[str, Any] = {}

    def start(self) -> None:
        lab_file = self.data / "lab.json"
        lab_file.unlink(missing_ok=True)  # left behind by a kill -9
        store = self.store or pg.lab_store(self.data)
        self.proc = subprocess.Popen(
            [*MAILFLOW, "run", "--scenario", str(self.scenario), "--data", str(self.data),
             "--speed", self.speed, "--http", "127.0.0.1:0",
             *(["--store", store] if store else []),
             *(["--servers", self.servers] if self.servers else [])],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        wait_started(self.proc, lab_file.exists)
        self.info = json.loads(lab_file.read_text())

    def port(self, server: str) -> int:
        return int(self.info["endpoints"][server][1])

    @property
    def api(self) -> str:
        return str(self.info["api"])

    @property
    def token(self) -> str:
        return (self.data / "api-token").read_text().strip()

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.communicate(timeout=30)

    def stop(self) -> tuple[int, str, str]:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, out, err


async def call(lab: LabProcess, method: str, path: str, body: Any = None) -> Any:
    """An API call on the lab process, with its token; the JSON of a 2xx answer."""
    async with aiohttp.ClientSession() as session, session.request(
        method, f"{lab.api}{path}", json=body,
        headers={"Authorization": f"Bearer {lab.token}"},
    ) as response:
        assert response.status < 300, await response.text()
        return await response.json()
