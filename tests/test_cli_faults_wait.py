"""`mailflow fault add|list|remove|clear` and `mailflow wait` against `mailflow run`."""

from __future__ import annotations

import json

from tests.process import LabProcess, cli

ALICE = "alice@contoso.test"


def test_fault_commands_add_list_remove_and_clear_rules(lab_process: LabProcess) -> None:
    data = lab_process.data
    added = json.loads(cli(data, "fault", "add", "--stage", "rcpt", "--action", "reply",
                           "--code", "451", "--recipient", "^alice@", "--count", "3",
                           "--json").stdout)
    assert (added["stage"], added["code"], added["remaining"]) == ("rcpt", 451, 3)
    cli(data, "fault", "add", "--stage", "mail", "--action", "delay", "--seconds", "1")
    listed = cli(data, "fault", "list").stdout
    assert "rcpt" in listed and "delay" in listed
    bad = cli(data, "fault", "add", "--stage", "mail", "--action", "reply", check=False)
    assert bad.returncode == 2 and "code" in bad.stderr
    assert cli(data, "fault", "remove", str(added["id"])).stdout.strip() == \
        f"removed rule {added['id']}"
    assert "removed 1 rule(s)" in cli(data, "fault", "clear").stdout
    assert json.loads(cli(data, "fault", "list", "--json").stdout) == []


def test_wait_prints_the_mail_that_is_there_and_exits_1_on_timeout(
        lab_process: LabProcess) -> None:
    data = lab_process.data
    late = cli(data, "wait", "--mailbox", ALICE, "--timeout", "0.2s", check=False)
    assert late.returncode == 1 and "timed out after 0.2s" in late.stderr
    cli(data, "send", "--to", ALICE, "--subject", "hello there")
    found = cli(data, "wait", "--mailbox", ALICE, "--subject", "hello", "--timeout", "30s")
    assert "hello there" in found.stdout
    bad = cli(data, "wait", "--mailbox", ALICE, "--timeout", "301s", check=False)
    assert bad.returncode == 2 and "--timeout" in bad.stderr
