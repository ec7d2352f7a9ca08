"""Real labs for tests: every server on port 0, a temporary data directory, a manual clock."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailflow import scenarios
from mailflow.runtime.lab import Lab


def require_tool(name: str) -> str:
    """The path of an external tool; skip without it, or fail when CI says tools are required."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin")
    if path is None:
        message = f"{name} is not installed"
        if os.environ.get("MAILFLOW_REQUIRE_TOOLS") == "1":
            pytest.fail(f"{message} and MAILFLOW_REQUIRE_TOOLS=1")
        pytest.skip(message)
    return path


def make_lab(data: Path, scenario: str = "mixed-2003") -> Lab:
    return Lab(scenarios.load(scenario), data, speed=0, http=("127.0.0.1", 0),
               smtp_port_override=0)


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    running = make_lab(tmp_path / "data")
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def lab2010(tmp_path: Path) -> AsyncIterator[Lab]:
    """The built-in exchange-2010 lab: EX2007-A, EX2010-A and EX2010-B in site HQ."""
    running = make_lab(tmp_path / "data2010", "exchange-2010")
    await running.start()
    yield running
    await running.stop()
