"""The ``fault`` step of lab files: rules added and cleared in a timeline, checked first."""

from __future__ import annotations

import pytest

from mailflow import labs
from mailflow.labs.runner import run_lab

COUNTED = """
scenario = "mixed-2003"
[[steps]]
fault = { stage = "rcpt", recipient = "^alice@", action = "delay", seconds = 0.1, count = 1 }
[[steps]]
send = { name = "slow", to = "alice@contoso.test", via = "EX2003-A" }
[[steps]]
[steps.expect]
metric = "mailflow_faults_injected_total"
labels = { server = "EX2003-A", stage = "rcpt" }
value = 1
[[steps]]
expect = { event = 1035, server = "EX2003-A", at_least = 1 }
[[steps]]
fault = { stage = "mail", action = "reply", code = 451 }
[[steps]]
fault = { clear = true }
[[steps]]
send = { to = "alice@contoso.test", via = "EX2003-A" }
[[steps]]
expect = { mailbox = "alice@contoso.test", count = 2 }
"""


async def test_a_lab_adds_and_clears_fault_rules() -> None:
    lines: list[str] = []
    run = await run_lab(labs.parse(COUNTED, "faults.toml", None), lines.append)
    assert run.passed, (run.error, lines)
    assert any("fault clear (2 removed)" in line for line in lines)


async def test_a_send_refused_by_a_fault_stops_the_run_with_the_reply() -> None:
    text = COUNTED.replace('action = "delay", seconds = 0.1', 'action = "reply", code = 451')
    run = await run_lab(labs.parse(text, "faults.toml", None), lambda line: None)
    assert run.error.startswith("step 2: send:") and "451" in run.error


@pytest.mark.parametrize(("step", "error"), [
    ('fault = { stage = "mail", action = "reply" }', "step 1: fault.code"),
    ('fault = { clear = false }', "step 1: fault: write { clear = true }"),
    ('fault = { stage = "mail", action = "reply", code = 451, server = "X" }',
     "step 1: fault.server"),
])
def test_a_bad_fault_step_names_its_key(step: str, error: str) -> None:
    with pytest.raises(labs.LabFileError, match=error.replace("{", r"\{").replace("}", r"\}")):
        labs.parse(f'scenario = "mixed-2003"\n[[steps]]\n{step}\n', "t.toml", None)
