"""The 2010 words of the CLI against `mailflow run --scenario exchange-2010` in its own process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.process import LabProcess, cli, ephemeral_scenario


@pytest.fixture
def lab2010(tmp_path: Path) -> Iterator[Path]:
    process = LabProcess(tmp_path)
    process.scenario = ephemeral_scenario(tmp_path, "exchange-2010")
    process.start()
    yield process.data
    code, _, err = process.stop()
    assert code == 0, err


def test_move_mailbox_and_queue_commands_speak_2010(lab2010: Path) -> None:
    data = lab2010
    started = json.loads(cli(data, "move", "start", "frank@contoso.test", "--to", "EX2007-A",
                             "--batch-name", "wave1", "--suspend-when-ready", "--json").stdout)
    shown = cli(data, "move", "show", started["id"]).stdout
    for line in ("direction", "push"), ("mrs_server_name", "EX2010-A"):
        assert any(line[0] in row and line[1] in row for row in shown.splitlines()), shown
    mailbox = cli(data, "mailbox", "show", "frank@contoso.test").stdout
    assert "msExchMailboxMoveBatchName" in mailbox and "wave1" in mailbox
    suspended = cli(data, "queue", "suspend", "EX2010-A", "mapi:EX2010-A-DB01").stdout
    assert "Suspended" in suspended
    assert "Ready" in cli(data, "queue", "resume", "EX2010-A", "mapi:EX2010-A-DB01").stdout
    refused = cli(data, "queue", "suspend", "EX2003-A", "deferred", check=False)
    assert refused.returncode != 0 and "use freeze" in refused.stderr
    online = cli(data, "move", "start", "ivan@contoso.test", "--to", "EX2010-A", "--online",
                 check=False)
    assert online.returncode != 0 and "cannot move online" in online.stderr
