"""What a new user hit following the README (issue 16, items 3, 10-14, 16): `mailflow run` in
its own process and the CLI against it, as a user runs them."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import mailflow
from tests.process import MAILFLOW, LabProcess, cli


def _json(data: Path, *args: str) -> Any:
    return json.loads(cli(data, *args, "--json").stdout)


def _held_move(data: Path, address: str) -> str:
    started = _json(data, "move", "start", address, "--to", "EX2003-B", "--hold")
    return str(started["id"])


def test_help_is_plain_text_and_version_prints() -> None:
    shown = subprocess.run([*MAILFLOW, "--help"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "``" not in shown.stdout
    version = subprocess.run([*MAILFLOW, "--version"], capture_output=True, text=True,
                             timeout=60)
    assert (version.returncode, version.stdout.strip()) == (0, f"mailflow {mailflow.__version__}")


@pytest.mark.parametrize("args, message", [
    (("clock", "--advance", "-5m"), "mailflow clock: the lab clock never goes back"),
    (("clock", "--advance=-5m"), "mailflow clock: the lab clock never goes back"),
    (("clock", "--advance", "99999d"), "mailflow clock: --advance must be 0 up to 3650d"),
    (("send", "--to", "bob@contoso.test", "--count", "0"),
     "mailflow send: --count must be 1..10000"),
    (("send", "--to", "bob@contoso.test", "--count", "x"),
     "mailflow send: --count wants a whole"),
    (("move", "start", "alice@contoso.test", "--to", "EX2003-B", "--bad-items", "10" * 15),
     "mailflow move: --bad-items must be 0..100000"),
    (("move", "start", "alice@contoso.test", "--to", "EX2003-B", "--bad-item-limit", "-1"),
     "mailflow move: --bad-item-limit must be 0..100000"),
    (("connector", "add", "REDMOND", "LONDON", "--type", "site", "--cost", "1000"),
     "mailflow connector: --cost must be 1..100"),
    (("queue", "show", "EX2003-A", "deferred", "--older-than", "-1h"),
     "mailflow queue: --older-than must not be negative"),
    (("move", "complete", "x", "--wait", "--timeout", "0"),
     "mailflow move: --timeout must be more than 0"),
])
def test_numbers_out_of_range_are_one_line_and_exit_2(tmp_path: Path, args: tuple[str, ...],
                                                      message: str) -> None:
    """Refused before any lab is looked for: no lab runs in ``tmp_path``."""
    result = cli(tmp_path, *args, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1, result.stderr


def test_an_unknown_queue_is_a_404_everywhere(lab_process: LabProcess) -> None:
    data = lab_process.data
    shown = cli(data, "queue", "show", "EX2003-A", "defered", check=False)
    assert (shown.returncode, shown.stderr.strip()) == (
        2, "mailflow queue: 404: no queue 'defered' on EX2003-A")
    url = f"{lab_process.api}/api/v1/queues/EX2003-A/defered/messages"
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(url, timeout=30)
    assert answer.value.code == 404
    assert json.loads(answer.value.read())["error"] == "no queue 'defered' on EX2003-A"
    assert cli(data, "queue", "show", "ex2003-a", "deferred").stdout.strip() == "(none)"


def test_send_prints_the_reply_json_and_matches_names_in_any_case(
        lab_process: LabProcess) -> None:
    data = lab_process.data
    refused = cli(data, "send", "--to", "nobody@contoso.test", check=False)
    assert (refused.returncode, refused.stderr.strip()) == (
        1, "mailflow send: 550 5.1.1 User unknown (RCPT TO nobody@contoso.test)")
    sent = _json(data, "send", "--to", "carol@contoso.test", "--server", "ex2003-b",
                 "--count", "2")
    assert [(s["server"], s["code"]) for s in sent] == [("EX2003-B", 250)] * 2
    assert all(s["reply"].startswith("2.6.0 <") for s in sent)
    text = cli(data, "send", "--to", "carol@contoso.test").stdout
    assert text.startswith("EX2003-A: 250 2.6.0 <")


def test_a_frozen_message_after_its_move_is_not_in_transit_and_attempts_agree(
        lab_process: LabProcess) -> None:
    data = lab_process.data
    move = _held_move(data, "alice@contoso.test")
    sent = _json(data, "send", "--to", "alice@contoso.test", "--count", "2")
    queued = _json(data, "queue", "show", "EX2003-A", "deferred")
    trace = _json(data, "trace", queued[0]["id"])["trace"]
    said = [t["detail"] for t in trace if t["stage"] == "deferred"]
    assert said == ["queue deferred, attempt 1, next retry in 30 min"]
    assert [q["attempts"] for q in queued] == [1, 1]
    frozen = sent[0]["reply"].split()[1].strip("<>")
    cli(data, "queue", "freeze", "EX2003-A", "deferred", frozen)
    cli(data, "move", "complete", move)
    rows = {r["identity"]: r for r in _json(data, "queues")}
    deferred = rows["EX2003-A\\Messages queued for deferred delivery"]
    assert (deferred["message_count"], deferred["status"], deferred["last_error"],
            deferred["next_retry_time"]) == (1, "Ready", None, None)


def test_moves_show_what_applies(lab_process: LabProcess) -> None:
    data = lab_process.data
    move = _held_move(data, "alice@contoso.test")
    doc = _json(data, "move", "show", move)
    assert (doc["online"], doc["bad_item_limit"]) == (False, 3)
    text = cli(data, "move", "show", move).stdout
    assert "None" not in text and "failure_reason         -" in text
    report = cli(data, "move", "report", move).stdout
    assert "<bad-item-limit>3</bad-item-limit>" in report
    assert _json(data, "mailbox", "show", "dave@contoso.test")["store"] == \
        "Private Information Store"
    assert _json(data, "mailbox", "show", "erin@contoso.test")["store"] == \
        "First Storage Group\\Mailbox Store (EX2000-LON)"


def test_move_complete_wait_returns_when_the_mail_has_landed(lab_process: LabProcess) -> None:
    data = lab_process.data
    move = _held_move(data, "alice@contoso.test")
    cli(data, "send", "--to", "alice@contoso.test", "--count", "3")
    done = cli(data, "move", "complete", move, "--wait", "--timeout", "60")
    assert done.stdout.rstrip().endswith(
        f"move {move} Completed: all mail for alice@contoso.test has reached its final place")
    # No polling needed afterwards: the three are in the mailbox at its new home.
    shown = _json(data, "mailbox", "show", "alice@contoso.test")
    assert (shown["server"], shown["message_count"]) == ("EX2003-B", 3)
    audit = cli(data, "audit").stdout
    assert "audit clean" in audit


def test_move_fail_wait_times_out_naming_what_still_waits(lab_process: LabProcess) -> None:
    """Mail frozen in ``deferred`` never reaches its place: the wait ends at its timeout."""
    data = lab_process.data
    move = _held_move(data, "bob@contoso.test")
    cli(data, "send", "--to", "bob@contoso.test")
    cli(data, "queue", "freeze", "EX2003-A", "deferred")
    waited = cli(data, "move", "fail", move, "--wait", "--timeout", "1s", check=False)
    assert waited.returncode == 1
    assert waited.stderr.strip() == (
        f"mailflow move: timed out after 1s waiting for move {move} (Failed);"
        " still queued: EX2003-A\\deferred 1")
    assert "recipients still queued: EX2003-A\\deferred 1" in waited.stdout
