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


# -- every key has a type and a range (issue 16, item 4) --------------------------------------

MOVE = 'move = { action = "start", name = "a", mailbox = "alice@contoso.test", to = "EX2003-B" }'


@pytest.mark.parametrize(("steps", "error"), [
    ('wait_until = { audit = "clean", every = 0 }',
     "step 1: wait_until.every: must be 1..86400 seconds (1 days), got 0"),
    ('wait_until = { audit = "clean", within = inf }',
     "step 1: wait_until.within: must be 0..2592000 seconds (30 days), got inf"),
    ('wait_until = { audit = "clean", within = "30d", every = "1s" }',
     "step 1: wait_until.every: checks at most 10000 times: within / every is 2.592e+06"),
    ('send = { to = "alice@contoso.test", count = "x" }',
     "step 1: send.count: expected an integer 1..10000, got string"),
    ('send = { to = "alice@contoso.test", count = -1 }',
     "step 1: send.count: must be 1..10000, got -1"),
    ("send = { to = 12345 }", "step 1: send.to: expected a non-empty string, got integer"),
    ('send = { to = "alice@contoso.test", size = 100000000000 }',
     "step 1: send.size: must be 0..10485760, got 100000000000"),
    ('send = { to = "alice@contoso.test", subject = "x\\r\\nBcc: eve@example.net" }',
     "step 1: send.subject: must not contain control characters (line breaks, tabs)"),
    ('expect = { mailbox = "alice@contoso.test", count = -1 }',
     "step 1: expect.count: must be 0..1000000, got -1"),
    ('expect = { mailbox = "nobody@contoso.test", count = 1 }',
     "step 1: expect.mailbox: no mailbox 'nobody@contoso.test' in scenario mixed-2003"),
    ('expect = { queue = "EX2003-A/deferred", count = 1 }',
     "step 1: expect.count: unknown key (expected one of: queue, depth, status)"),
    ("advance = 1e300", "step 1: advance: must be 0..2592000 seconds (30 days), got 1e+300"),
    ('advance = "99999d"', "step 1: advance: must be 0..2592000 seconds (30 days),"
                           " got '99999d'"),
    (f"{MOVE}\n[[steps]]\n{MOVE}",
     "step 2: move.name: a move named 'a' was already started at step 1"),
    (MOVE.replace("}", ', at = "+1000d" }'),
     "step 1: move.at: must be 0..2592000 seconds (30 days), got '1000d'"),
    (MOVE.replace("}", ", bad_items = 1000000000000000000000000000000 }"),
     "step 1: move.bad_items: must be 0..100000, got 1000000000000000000000000000000"),
    (MOVE.replace("}", ", bad_items = 100001 }"),
     "step 1: move.bad_items: must be 0..100000, got 100001"),
    (MOVE.replace("}", ', engine = "robocopy" }'),
     "step 1: move.engine: one of wizard2003, movemailbox2007, mrs2010, got 'robocopy'"),
    (f'{MOVE}\n[[steps]]\nmove = {{ action = "complete", name = "a", mailbox = "x" }}',
     "step 2: move.mailbox: unknown key (expected one of: name)"),
    ('connector = { action = "add", type = "site" }', "step 1: connector.sites: required"),
    ('connector = { action = "add", sites = ["REDMOND", "LONDON"], cost = 0 }',
     "step 1: connector.cost: must be 1..100, got 0"),
    ("rpc = { action = \"allow\", servers = [\"EX2003-A\"] }",
     'step 1: rpc.servers: expected a pair, e.g. ["A", "B"]'),
    ("expect = { event = 99999999999999 }", "step 1: expect.event: must be 1..65535,"
                                            " got 99999999999999"),
    ("expect = { metric = \"up\", value = nan }", "step 1: expect.value: must be a finite"
                                                  " number, got nan"),
    ("x = " + "[" * 5000 + "]" * 5000, "-: arrays or tables nested too deeply"),
])
def test_each_key_is_checked_for_type_and_range(steps: str, error: str) -> None:
    with pytest.raises(labs.LabFileError) as info:
        labs.parse(f"[[steps]]\n{steps}\n", "t.toml", None)
    assert str(info.value).startswith(f"t.toml: {error}")


def test_a_lab_has_at_most_a_thousand_steps() -> None:
    with pytest.raises(labs.LabFileError, match=r"^t.toml: steps: a lab needs 1..1000"):
        labs.parse('[[steps]]\nadvance = "1s"\n' * 1001, "t.toml", None)


def test_an_embedded_scenario_out_of_range_names_the_lab_and_the_key() -> None:
    text = ('[scenario]\nname = "x"\n[scenario.organization]\nname = "C"\n'
            'domains = ["c.test"]\n[[scenario.sites]]\nname = "S"\n[[scenario.servers]]\n'
            'name = "A"\nversion = "2003"\nsite = "S"\n[scenario.defaults]\n'
            'deferred_retry_seconds = 1e-300\n[[steps]]\nadvance = "1m"\n')
    with pytest.raises(labs.LabFileError) as info:
        labs.parse(text, "t.toml", None)
    assert str(info.value) == ("t.toml: scenario: t.toml [scenario]: defaults."
                               "deferred_retry_seconds: must be 60..86400, got 1e-300")


async def test_a_refused_action_stops_the_run_and_names_the_step() -> None:
    plan = labs.parse('[[steps]]\nsend = { to = "nobody@contoso.test", via = "EX2003-A" }\n'
                      '[[steps]]\nexpect = { audit = "clean" }\n', "t.toml", None)
    run = await run_lab(plan, lambda line: None)
    assert not run.passed and run.results == [] and run.error_status == 1
    assert run.error == "step 1: send: 550 5.1.1 User unknown (RCPT TO nobody@contoso.test)"
