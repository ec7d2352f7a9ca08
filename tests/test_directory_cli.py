"""`mailflow directory`, `adc` and `groups` as a user runs them, against `mailflow run`."""

from __future__ import annotations

import json

from tests.process import LabProcess, cli

ERIN = "erin@contoso.test"


def test_directory_adc_and_groups_commands(lab_process: LabProcess) -> None:
    data = lab_process.data
    shown = cli(data, "directory", "show", ERIN).stdout
    assert shown.splitlines()[0].split()[:3] == ["REPLICA", "STATE", "SERVER"]
    assert {line.split()[0] for line in shown.splitlines()[1:]} == {"AD", "REDMOND", "LONDON"}
    edited = json.loads(cli(data, "directory", "edit", ERIN, "--replica", "london",
                            "--set", "telephoneNumber=555-0100", "--json").stdout)
    london = next(r for r in edited["replicas"] if r["replica"] == "LONDON")
    assert london["edited"] and london["attributes"] == {"telephoneNumber": "555-0100"}
    bad = cli(data, "directory", "edit", ERIN, "--replica", "PARIS", "--set", "a=b",
              check=False)
    assert bad.returncode != 0 and "PARIS" in bad.stderr
    assert "LONDON CA" in cli(data, "adc", "status").stdout
    ran = json.loads(cli(data, "adc", "run", "LONDON CA", "--json").stdout)
    assert ran["ran"] == ["LONDON CA"]
    assert json.loads(cli(data, "directory", "show", ERIN, "--json").stdout)["replicas"][0][
        "attributes"]["telephoneNumber"] == "555-0100"  # carried to AD by the agreement
    assert cli(data, "adc", "stop").stdout.startswith("ADC stopped")
    assert cli(data, "adc", "start").stdout.startswith("ADC running")
    missing = cli(data, "adc", "run", "NOPE", check=False)
    assert missing.returncode != 0 and "NOPE" in missing.stderr
    assert "sales@contoso.test" in cli(data, "groups", "list").stdout
    assert "Distribution Lists/cn=sales" in cli(data, "groups", "show", "sales@contoso.test").stdout
