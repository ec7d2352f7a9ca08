"""The pytest plugin: loaded in this very run (its entry point) without clashing with our
fixtures, and the example suite of tests/plugin_example, which uses nothing else, passing
under `pytest -p mailflow.testing.plugin` and under pytest-xdist with two workers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

EXAMPLE = Path(__file__).parent / "plugin_example"


def run_example(*args: str, autoload: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    if not autoload:
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    # The example suite is synchronous: pytest-asyncio, if installed, has nothing to do.
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:asyncio", *args],
                          cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args", [
    pytest.param(("-p", "mailflow.testing.plugin"), id="plugin-by-name"),
    pytest.param(("-n", "2"), id="xdist-two-workers"),
])
def test_the_example_suite_passes(args: tuple[str, ...]) -> None:
    result = run_example(*args, autoload=args[0] != "-p")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_the_fixture_is_here_in_our_own_run_too(mailflow_lab: Any) -> None:
    lab = mailflow_lab(defaults={"max_message_size": 4096})
    queue_id = lab.send("bob@contoso.test", subject="plugin")
    [message] = lab.wait("bob@contoso.test", subject="plugin")
    assert message["id"] == queue_id
    assert lab.advance(60) > 0
    assert lab.queue_depth("EX2003-A", "deferred") == 0
