"""Hostile scenario and lab files, through the CLI as a user runs it (issue 16, item 4, and
`lab run --keep` of item 14): one line and exit 2, never a traceback; a lab run stopped by
SIGTERM stops its lab and removes its temporary directory; --keep prints its verdict first."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.process import MAILFLOW, wait_started

# Waits an hour of simulated time at --speed 1, so the run is still going when signalled.
SLOW = """
name = "slow"
[[steps]]
wait_until = { queue = "EX2003-A/deferred", depth = 99, within = "1h", every = "1m" }
"""
QUICK = """
name = "quick"
[[steps]]
send = { to = "alice@contoso.test", via = "EX2003-A" }
[[steps]]
expect = { mailbox = "alice@contoso.test", count = 1 }
"""


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a refused command (exit 2, no traceback)."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(("step", "error"), [
    ('send = { to = "alice@contoso.test", count = "x" }',
     "step 1: send.count: expected an integer 1..10000, got string"),
    ("send = { to = 12345 }", "step 1: send.to: expected a non-empty string, got integer"),
    ('wait_until = { audit = "clean", every = 0 }',
     "step 1: wait_until.every: must be 1..86400 seconds (1 days), got 0"),
    ("x = " + "[" * 5000 + "]" * 5000, "-: arrays or tables nested too deeply"),
])
def test_a_bad_lab_file_is_one_line_and_exit_2(tmp_path: Path, step: str, error: str) -> None:
    lab_file = tmp_path / "bad.toml"
    lab_file.write_text(f"[[steps]]\n{step}\n")
    result = subprocess.run([*MAILFLOW, "lab", "run", str(lab_file)], capture_output=True,
                            text=True, timeout=60)
    assert one_line_error(result) == f"mailflow lab: {lab_file}: {error}"


@pytest.mark.parametrize(("extra", "error"), [
    ("[[users]]\ncount = 9223372036854775807\n",
     "users[0].count: must be 1..100000, got 9223372036854775807"),
    ('[[mailboxes]]\naddress = "a@c.test"\nserver = "A"\nitems = 100001\n',
     "mailboxes[0].items: must be 0..100000, got 100001"),
    ("[defaults]\ndeferred_retry_seconds = 1e-300\n",
     "defaults.deferred_retry_seconds: must be 60..86400, got 1e-300"),
])
def test_a_bad_scenario_is_one_line_and_exit_2(tmp_path: Path, extra: str, error: str) -> None:
    scenario = tmp_path / "bad.toml"
    scenario.write_text('name = "x"\n[organization]\nname = "C"\ndomains = ["c.test"]\n'
                        '[[sites]]\nname = "S"\n[[servers]]\nname = "A"\nversion = "2003"\n'
                        f'site = "S"\n{extra}')
    result = subprocess.run([*MAILFLOW, "run", "--scenario", str(scenario), "--data",
                             str(tmp_path / "data"), "--http", "127.0.0.1:0"],
                            capture_output=True, text=True, timeout=60)
    assert one_line_error(result).endswith(f"{scenario}: {error}")


def test_sigterm_stops_a_lab_run_and_removes_its_temporary_directory(tmp_path: Path) -> None:
    lab_file, scratch = tmp_path / "slow.toml", tmp_path / "tmp"
    lab_file.write_text(SLOW)
    scratch.mkdir()
    proc = subprocess.Popen([*MAILFLOW, "lab", "run", str(lab_file), "--speed", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TMPDIR": str(scratch)})
    wait_started(proc, lambda: any(scratch.glob("mailflow-lab-*/data/lab.json")), timeout=60)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    assert err.splitlines() == ["mailflow lab: stopped by SIGTERM before the lab finished:"
                                " stopped the lab and removed its temporary directory"]
    assert list(scratch.iterdir()) == []


def test_keep_prints_the_verdict_and_the_junit_report_before_it_serves(tmp_path: Path
                                                                       ) -> None:
    lab_file, report = tmp_path / "quick.toml", tmp_path / "junit.xml"
    lab_file.write_text(QUICK)
    proc = subprocess.Popen([*MAILFLOW, "lab", "run", str(lab_file), "--keep", "--junit",
                             str(report)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    lines: list[str] = []
    while not lines or not lines[-1].startswith("lab kept running"):
        line = proc.stdout.readline()
        assert line, proc.communicate()
        lines.append(line)
    assert any(line.startswith("PASS: 1/1 expectations held") for line in lines), lines
    assert report.exists()  # written before the lab is kept, not after Ctrl-C
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "PASS" not in out  # printed once, before


@pytest.mark.parametrize("speed", ["nan", "inf", "-1", "0.001"])
def test_lab_run_speed_out_of_range(speed: str) -> None:
    result = subprocess.run([*MAILFLOW, "lab", "run", "expiry-ndr", "--speed", speed],
                            capture_output=True, text=True, timeout=60)
    assert one_line_error(result).startswith("mailflow lab: --speed must be 0 (the lab drives"
                                             " the clock) or 0.01..1000000, not ")
