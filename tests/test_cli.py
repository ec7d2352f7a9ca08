"""The `mailflow` command as a user runs it: a lab in its own process, the CLI talking to it."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from mailflow.cli.main import build_parser
from tests.conftest import require_tool
from tests.process import MAILFLOW, LabProcess, cli, mailbox_once


@pytest.fixture
def running_lab(lab_process: LabProcess) -> tuple[Path, dict[str, list[object]]]:
    """The data directory and endpoints of `mailflow run` (conftest's ``lab_process``)."""
    return lab_process.data, lab_process.info["endpoints"]


def test_walkthrough_with_the_cli_and_swaks(running_lab: tuple[Path, dict[str, list[object]]]
                                            ) -> None:
    swaks = require_tool("swaks")
    data, endpoints = running_lab
    port = str(endpoints["EX2003-A"][1])

    def send(to: str) -> None:
        subprocess.run([swaks, "--to", to, "--server", "127.0.0.1", "--port", port],
                       check=True, capture_output=True, timeout=60)

    send("alice@contoso.test")
    started = json.loads(cli(data, "move", "start", "alice@contoso.test", "--to", "EX2003-B",
                             "--hold", "--json").stdout)
    assert started["status"] == "InProgress"
    for _ in range(3):
        send("alice@contoso.test")
    queues = cli(data, "queues").stdout
    assert re.search(r"EX2003-A\\Messages queued for deferred delivery\s+3\s+Retry", queues)
    status = cli(data, "status").stdout
    assert "alice@contoso.test (EX2003-A)" in status

    cli(data, "move", "complete", started["id"])
    shown = mailbox_once(data, "alice@contoso.test", 4)
    assert (shown["server"], shown["message_count"]) == ("EX2003-B", 4)
    messages = json.loads(cli(data, "mailbox", "messages", "alice@contoso.test",
                              "--json").stdout)
    trace = cli(data, "trace", messages[-1]["id"]).stdout
    for stage in ("accepted", "refused", "deferred", "released", "relayed", "delivered"):
        assert stage in trace
    audit = cli(data, "audit")
    assert "audit clean" in audit.stdout and "accepted 4, delivered 4" in audit.stdout


def test_cli_reports_errors_in_one_line(running_lab: tuple[Path, dict[str, list[object]]]
                                        ) -> None:
    data, _ = running_lab
    missing = cli(data, "mailbox", "show", "nobody@contoso.test", check=False)
    assert missing.returncode == 2
    assert missing.stderr.strip() == "mailflow mailbox: 404: no mailbox 'nobody@contoso.test'"
    sent = cli(data, "send", "--to", "bob@contoso.test", "--count", "2")
    assert sent.stdout.count("Queued mail for delivery") == 2
    assert json.loads(cli(data, "mailbox", "show", "bob@contoso.test",
                          "--json").stdout)["message_count"] == 2


def test_cli_without_a_lab_says_how_to_start_one(tmp_path: Path) -> None:
    result = cli(tmp_path, "status", check=False)
    assert result.returncode == 2 and "mailflow run" in result.stderr


def test_bad_scenario_is_refused_before_anything_starts(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[organization]\nname = "X"\ndomains = ["x.test"]\n'
                   '[[sites]]\nname = "S"\n[[servers]]\nname = "A"\nversion = "4.0"\n'
                   'site = "S"\nsmtp_port = 0\n')
    result = cli(tmp_path / "data", "run", "--scenario", str(bad), check=False)
    assert result.returncode == 2
    assert str(bad) in result.stderr and "servers[0].version" in result.stderr
    assert not (tmp_path / "data").exists()


def test_operator_commands(running_lab: tuple[Path, dict[str, list[object]]]) -> None:
    data, _ = running_lab
    added = cli(data, "connector", "add", "--type", "site", "REDMOND", "LONDON").stdout
    assert "'REDMOND-LONDON Site' added" in added
    listed = json.loads(cli(data, "connector", "list", "--json").stdout)
    assert [c["type"] for c in listed] == ["x400", "site"]
    cli(data, "connector", "remove", str(listed[1]["id"]))
    assert len(json.loads(cli(data, "connector", "list", "--json").stdout)) == 1
    assert "blocked" in cli(data, "rpc", "block", "EX2003-A", "EX2003-B").stdout
    assert "allowed" in cli(data, "rpc", "allow", "EX2003-A", "EX2003-B").stdout
    assert "mta on EX55-LON: stopped" in cli(data, "service", "stop", "EX55-LON", "mta").stdout
    assert cli(data, "service", "stop", "EX55-LON", "mta", check=False).returncode == 2
    cli(data, "service", "start", "EX55-LON", "mta")

    started = json.loads(cli(data, "move", "start", "dave@contoso.test", "--to", "EX2003-A",
                             "--hold", "--json").stdout)
    cli(data, "send", "--to", "dave@contoso.test", "--server", "EX55-LON")
    held = json.loads(cli(data, "queue", "show", "EX55-LON", "holding", "--json").stdout)
    assert [m["recipient"] for m in held] == ["dave@contoso.test"]
    cli(data, "move", "complete", started["id"])
    retried = cli(data, "queue", "retry", "EX55-LON", "mta:EX2003-A").stdout
    assert "1 retried now" in retried
    log = cli(data, "events").stdout
    for needle in ("MSExchangeIS", "9660", "MSExchangeMTA", "9318", "9322",
                   "Remote Server Name EX2003-A"):
        assert needle in log


def test_every_command_defaults_to_the_mailflow_data_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAILFLOW_DATA", raising=False)
    parser = build_parser()
    for argv in (["run"], ["status"], ["queues"], ["audit"], ["move", "list"],
                 ["move", "start", "alice@contoso.test", "--to", "EX2003-B"],
                 ["mailbox", "list"], ["events"], ["connector", "list"], ["clock"]):
        assert parser.parse_args(argv).data == "mailflow-data", argv
    assert parser.parse_args(["lab", "run", "stuck-rpc-queue"]).data is None
    # As a new user types it, in a directory without a lab.
    result = subprocess.run([*MAILFLOW, "status"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "no running lab in mailflow-data" in result.stderr
