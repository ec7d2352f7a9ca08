"""Scripted labs: every built-in passes; wrong expectations and bad files are reported."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from mailflow import labs
from mailflow.labs.runner import run_lab
from tests.process import MAILFLOW

WRONG = """
name = "wrong"
description = "expects what does not happen"
scenario = "mixed-2003"

[[steps]]
send = { name = "one", to = "alice@contoso.test", via = "EX2003-A" }

[[steps]]
expect = { mailbox = "alice@contoso.test", count = 1 }

[[steps]]
expect = { queue = "EX2003-A/deferred", depth = 5 }
"""


def lab_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MAILFLOW, "lab", *args], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("name", labs.builtin_names())
async def test_builtin_lab_passes(name: str) -> None:
    lines: list[str] = []
    run = await run_lab(labs.load(name), lines.append)
    assert run.results and run.passed, "\n".join(lines)
    assert len(lines) == len(run.plan.steps) + 1  # a heading, then a line a step


def test_a_wrong_expectation_fails_the_run_with_a_junit_report(tmp_path: Path) -> None:
    lab_file, report = tmp_path / "wrong.toml", tmp_path / "junit.xml"
    lab_file.write_text(WRONG)
    result = lab_cli("run", str(lab_file), "--junit", str(report))
    assert result.returncode == 1, result.stderr
    assert "FAIL: 1/2 expectations held" in result.stdout
    assert "step 3: expect queue=EX2003-A/deferred depth=5: saw depth 0" in result.stdout
    suite = ET.parse(report).getroot()
    assert (suite.tag, suite.get("tests"), suite.get("failures")) == ("testsuite", "2", "1")
    failures = [case for case in suite if case.find("failure") is not None]
    assert [case.get("name", "").split(":")[0] for case in failures] == ["step 3"]


@pytest.mark.parametrize(("step", "where"), [
    ('teleport = { to = "x" }', "step 1: teleport"),
    ('send = { to = "alice@contoso.test", via = "EX9999" }', "step 1: send.via"),
    ('advance = "soon"', "step 1: advance"),
    ('expect = { queue = "EX2003-A/deferred", depth = 1, colour = "red" }',
     "step 1: expect.colour"),
    ('move = { action = "complete", name = "ghost" }', "step 1: move.name"),
])
def test_a_bad_lab_file_is_refused_before_anything_starts(tmp_path: Path, step: str,
                                                          where: str) -> None:
    lab_file, data = tmp_path / "bad.toml", tmp_path / "data"
    lab_file.write_text(f"[[steps]]\n{step}\n")
    result = subprocess.run([*MAILFLOW, "lab", "run", str(lab_file), "--data", str(data)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"{lab_file}: {where}" in result.stderr
    assert not data.exists()


def test_list_and_show_the_builtins() -> None:
    listed = lab_cli("list").stdout
    for name in ("deferred-delivery-2003", "holding-folder-2000", "stuck-rpc-queue",
                 "mrs-online-move-2010", "bad-items-rollback", "expiry-ndr"):
        assert name in listed
    shown = lab_cli("show", "stuck-rpc-queue").stdout
    assert shown == labs.builtin_text("stuck-rpc-queue")
    assert labs.parse(shown, "copy", None).name == "stuck-rpc-queue"


async def test_an_embedded_scenario(tmp_path: Path) -> None:
    embedded = """
name = "tiny"
[scenario]
name = "tiny-org"
[scenario.organization]
name = "Tiny"
domains = ["tiny.test"]
[[scenario.sites]]
name = "HQ"
[[scenario.servers]]
name = "EX1"
version = "2003"
site = "HQ"
smtp_port = 0
[[scenario.mailboxes]]
address = "ann@tiny.test"
server = "EX1"
[[steps]]
send = { to = "ann@tiny.test", via = "EX1" }
[[steps]]
expect = { mailbox = "ann@tiny.test", count = 1 }
"""
    plan = labs.parse(embedded, "tiny.toml", tmp_path)
    assert plan.scenario.name == "tiny-org" and plan.scenario.servers[0].name == "EX1"
    run = await run_lab(plan, lambda line: None)
    assert run.passed and len(run.results) == 1
