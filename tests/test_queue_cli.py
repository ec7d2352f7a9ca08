"""`mailflow queue|qshape|messages|server|trace` as a user runs them, against `mailflow run`."""

from __future__ import annotations

import json

from tests.process import LabProcess, cli


def test_queue_viewer_from_the_shell(lab_process: LabProcess) -> None:
    data = lab_process.data
    cli(data, "move", "start", "alice@contoso.test", "--to", "EX2003-B", "--hold")
    cli(data, "send", "--to", "alice@contoso.test", "--count", "2", "--from",
        "bob@contoso.test", "--subject", "parked")
    rows = json.loads(cli(data, "queue", "show", "EX2003-A", "deferred", "--json").stdout)
    assert [r["subject"] for r in rows] == ["parked 1/2", "parked 2/2"]
    shown = cli(data, "queue", "show", "EX2003-A", "deferred", "--sender", "bob").stdout
    assert shown.count("alice@contoso.test") == 2 and "FROZEN" in shown
    assert "(none)" in cli(data, "queue", "show", "EX2003-A", "deferred", "--older-than",
                           "1h").stdout

    frozen = cli(data, "queue", "freeze", "EX2003-A", "deferred", rows[0]["id"]).stdout
    assert frozen.strip() == f"message {rows[0]['id']} in EX2003-A\\deferred: frozen"
    again = cli(data, "queue", "thaw", "EX2003-A", "deferred", check=False)
    assert again.returncode == 2 and "409" in again.stderr

    qshape = cli(data, "qshape", "EX2003-A").stdout.splitlines()
    assert qshape[0].split() == ["T", "5", "10", "20", "40", "80", "160", "320", "640",
                                 "1280", "1280+"]
    assert qshape[1].split()[:3] == ["TOTAL", "2", "2"]
    assert qshape[2].split()[:2] == ["contoso.test", "2"]

    found = json.loads(cli(data, "messages", "--search", "PARKED", "--json").stdout)
    assert [m["id"] for m in found] == [r["id"] for r in rows]
    trace = cli(data, "trace", rows[1]["message_id"]).stdout
    for stage in ("accepted", "categorized", "refused", "deferred"):
        assert stage in trace
    assert "ecMailboxInTransit (0x50C)" in trace

    deleted = cli(data, "queue", "delete", "EX2003-A", "deferred", rows[1]["id"],
                  "--ndr").stdout
    assert "with NDR" in deleted
    messages = json.loads(cli(data, "mailbox", "messages", "bob@contoso.test",
                              "--json").stdout)
    assert [m["subject"] for m in messages] == ["Undeliverable: parked 2/2"]

    assert "disabled" in cli(data, "server", "disable-outbound", "EX2003-A").stdout
    assert "enabled" in cli(data, "server", "enable-outbound", "EX2003-A").stdout
    audit = cli(data, "audit").stdout
    assert "relayed 0, NDR 0, deleted 1" in audit and "audit clean" in audit
