"""Scenario loader: built-ins match DESIGN.md; every error names file, key and problem."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from mailflow.scenarios import ScenarioError, builtin_names, load, parse
from stores.topology import DEFAULT_RANGES, ConnectorSpec, Defaults, Server, Version

MINIMAL = """
name = "tiny"

[organization]
name = "Contoso"
domains = ["contoso.test"]

[[sites]]
name = "REDMOND"

[[servers]]
name = "EX2003-A"
version = "2003"
site = "REDMOND"
smtp_port = 2525
"""


def load_error(tmp_path: Path, text: str) -> ScenarioError:
    path = tmp_path / "lab.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        load(str(path))
    err = info.value
    assert err.file == str(path)
    assert str(err) == f"{path}: {err.key}: {err.problem}"
    return err


def test_builtin_names() -> None:
    assert builtin_names() == ["exchange-2010", "exchange-2010-dag", "mixed-2003"]


def test_mixed_2003_matches_design() -> None:
    s = load("mixed-2003")
    assert (s.name, s.organization, s.domains) == ("mixed-2003", "Contoso", ("contoso.test",))
    assert s.sites == ("REDMOND", "LONDON")
    assert s.servers == (
        Server("EX2003-A", Version("2003"), "REDMOND", 2525),
        Server("EX2003-B", Version("2003"), "REDMOND", 2526),
        Server("EX55-LON", Version("5.5"), "LONDON", 2527),
        Server("EX2000-LON", Version("2000"), "LONDON", 2528),
    )
    assert s.connectors == (ConnectorSpec("x400", "REDMOND", "LONDON", 1, "REDMOND-LONDON X.400"),)
    assert s.rpc_allow == ()
    homes = {m.address: m.server for m in s.mailboxes}
    for local, server in [
        ("alice", "EX2003-A"),
        ("bob", "EX2003-A"),
        ("carol", "EX2003-B"),
        ("dave", "EX55-LON"),
        ("erin", "EX2000-LON"),
    ]:
        assert homes[f"{local}@contoso.test"] == server
    users = [m for m in s.mailboxes if m.address.startswith("user")]
    assert len(users) == 100
    assert users[0].address == "user001@contoso.test"
    assert users[-1].address == "user100@contoso.test"
    assert {m.server for m in users} == {srv.name for srv in s.servers}
    assert sum(m.server == "EX55-LON" for m in users) == 25
    assert s.defaults == Defaults()
    assert s.source.startswith("# mixed-2003")


def test_exchange_2010_matches_design() -> None:
    s = load("exchange-2010")
    assert s.sites == ("HQ",)
    assert s.servers == (
        Server("EX2007-A", Version("2007"), "HQ", 2525),
        Server("EX2010-A", Version("2010"), "HQ", 2526, ("mailbox", "hub", "cas")),
        Server("EX2010-B", Version("2010"), "HQ", 2527, ("mailbox", "hub")),
        Server("EX2003-A", Version("2003"), "HQ", 2528),
    )
    assert [s.name for s in s.servers if s.runs_mrs] == ["EX2010-A"]
    assert s.connectors == ()
    homes = {m.address: m.server for m in s.mailboxes}
    assert homes["frank@contoso.test"] == "EX2010-A"
    assert homes["grace@contoso.test"] == "EX2010-A"
    assert homes["heidi@contoso.test"] == "EX2007-A"
    assert homes["ivan@contoso.test"] == "EX2003-A"
    assert [m.address for m in s.mailboxes if m.archive] == ["grace@contoso.test"]
    users = [m for m in s.mailboxes if m.address.startswith("user")]
    assert len(users) == 50
    assert {"user001@contoso.test", "user050@contoso.test"} <= homes.keys()
    assert {m.server for m in users} == {"EX2007-A", "EX2010-A", "EX2010-B"}


def test_custom_file_normalises_and_applies_defaults(tmp_path: Path) -> None:
    text = (
        MINIMAL
        + """
[[mailboxes]]
address = "Zoe@CONTOSO.test"
server = "ex2003-a"

[defaults]
deferred_retry_seconds = 60
max_recipients = 500
"""
    )
    path = tmp_path / "lab.toml"
    path.write_text(text, encoding="utf-8")
    s = load(str(path))
    assert s.mailboxes[0].address == "zoe@contoso.test"
    assert s.mailboxes[0].server == "EX2003-A"  # the canonical spelling
    assert s.mailboxes[0].display_name == "Zoe"
    assert s.defaults.deferred_retry_seconds == 60.0
    assert s.defaults.max_recipients == 500
    assert s.source == text


def test_missing_file() -> None:
    with pytest.raises(ScenarioError) as info:
        load("/nonexistent/lab.toml")
    assert (info.value.file, info.value.key) == ("/nonexistent/lab.toml", "-")
    assert "no such file" in info.value.problem


def test_toml_syntax_error(tmp_path: Path) -> None:
    err = load_error(tmp_path, 'name = "x"\n[organization\n')
    assert err.key == "-"
    assert "TOML syntax error" in err.problem


def test_unknown_top_level_key(tmp_path: Path) -> None:
    err = load_error(tmp_path, "colour = 'blue'\n" + MINIMAL)
    assert err.key == "colour"
    assert "unknown key" in err.problem


def test_unknown_key_in_table(tmp_path: Path) -> None:
    err = load_error(tmp_path, MINIMAL + "[defaults]\nretry = 5\n")
    assert err.key == "defaults.retry"
    assert "unknown key" in err.problem and "deferred_retry_seconds" in err.problem


def test_unknown_version(tmp_path: Path) -> None:
    err = load_error(tmp_path, MINIMAL.replace('"2003"', '"2016"'))
    assert err.key == "servers[0].version"
    assert "unknown version '2016'" in err.problem


def test_unquoted_version(tmp_path: Path) -> None:
    err = load_error(tmp_path, MINIMAL.replace('"2003"', "2003"))
    assert err.key == "servers[0].version"
    assert "quoted string" in err.problem


def test_duplicate_port(tmp_path: Path) -> None:
    extra = '[[servers]]\nname = "EX2003-B"\nversion = "2003"\nsite = "REDMOND"\nsmtp_port = 2525\n'
    err = load_error(tmp_path, MINIMAL + extra)
    assert err.key == "servers[1].smtp_port"
    assert "port 2525 is already used by EX2003-A" in err.problem


def test_port_zero_may_repeat(tmp_path: Path) -> None:
    text = MINIMAL.replace("2525", "0")
    text += '[[servers]]\nname = "EX2003-B"\nversion = "2003"\nsite = "REDMOND"\nsmtp_port = 0\n'
    assert [s.smtp_port for s in parse(text, "x.toml").servers] == [0, 0]


def test_a_server_may_name_the_host_other_processes_reach_it_at(tmp_path: Path) -> None:
    text = MINIMAL + 'host = "redmond.lab.example"\n'
    assert parse(text, "x.toml").servers[0].host == "redmond.lab.example"
    assert parse(MINIMAL, "x.toml").servers[0].host == ""
    err = load_error(tmp_path, MINIMAL + 'host = "redmond:2525"\n')
    assert err.key == "servers[0].host"
    err = load_error(tmp_path, MINIMAL + 'host = "-bad host"\n')
    assert err.key == "servers[0].host"
    assert "not a host name or an IP address" in err.problem


def test_unknown_server(tmp_path: Path) -> None:
    err = load_error(
        tmp_path, MINIMAL + '[[mailboxes]]\naddress = "a@contoso.test"\nserver = "EX9"\n'
    )
    assert err.key == "mailboxes[0].server"
    assert "unknown server 'EX9'" in err.problem


def test_unknown_site(tmp_path: Path) -> None:
    err = load_error(tmp_path, MINIMAL.replace('site = "REDMOND"', 'site = "PARIS"'))
    assert err.key == "servers[0].site"
    assert "unknown site 'PARIS'" in err.problem


def test_invalid_address(tmp_path: Path) -> None:
    text = MINIMAL + '[[mailboxes]]\naddress = "not an address"\nserver = "EX2003-A"\n'
    err = load_error(tmp_path, text)
    assert err.key == "mailboxes[0].address"
    assert "invalid address 'not an address'" in err.problem


def test_foreign_domain(tmp_path: Path) -> None:
    text = MINIMAL + '[[mailboxes]]\naddress = "eve@fabrikam.test"\nserver = "EX2003-A"\n'
    err = load_error(tmp_path, text)
    assert err.key == "mailboxes[0].address"
    assert "domain 'fabrikam.test' is not accepted" in err.problem


def test_duplicate_address_after_generation(tmp_path: Path) -> None:
    text = MINIMAL + '[[mailboxes]]\naddress = "User002@contoso.test"\nserver = "EX2003-A"\n'
    err = load_error(tmp_path, text + "[[users]]\ncount = 3\n")
    assert err.key == "users[0].prefix"
    assert "duplicate address user002@contoso.test (also mailboxes[0].address)" in err.problem


def test_connector_to_itself(tmp_path: Path) -> None:
    err = load_error(
        tmp_path, MINIMAL + '[[connectors]]\ntype = "site"\nsites = ["REDMOND", "redmond"]\n'
    )
    assert err.key == "connectors[0].sites"


def test_rpc_unknown_server(tmp_path: Path) -> None:
    err = load_error(tmp_path, MINIMAL + '[rpc]\nallow = [["EX2003-A", "EX55-LON"]]\n')
    assert err.key == "rpc.allow[0][1]"
    assert "unknown server 'EX55-LON'" in err.problem


def test_default_must_be_in_range(tmp_path: Path) -> None:
    err = load_error(tmp_path, MINIMAL + "[defaults]\nitem_size = 0\n")
    assert err.key == "defaults.item_size"
    assert err.problem == "must be 1..1048576, got 0"


def test_builtin_errors_name_builtin() -> None:
    with pytest.raises(ScenarioError, match=r"^builtin:x: servers: at least one server"):
        parse('name = "x"\n[organization]\nname = "C"\ndomains = ["c.test"]\n', "builtin:x")


def test_smarthost_key(tmp_path: Path) -> None:
    base = (Path(__file__).parent.parent / "mailflow/scenarios/mixed-2003.toml").read_text()
    good = tmp_path / "good.toml"
    good.write_text('smarthost = "127.0.0.1:1025"\n' + base)
    assert load(str(good)).smarthost == "127.0.0.1:1025"
    bad = tmp_path / "bad.toml"
    bad.write_text('smarthost = "mail.example.net"\n' + base)
    with pytest.raises(ScenarioError) as error:
        load(str(bad))
    assert error.value.key == "smarthost" and "HOST:PORT" in error.value.problem


# -- ranges: every number has one, and nothing unbounded gets in (issue 16, item 4) ---------


def test_every_default_has_a_range_that_holds_its_default() -> None:
    defaults = Defaults()
    assert set(DEFAULT_RANGES) == {f.name for f in fields(Defaults)}
    for name, (low, high) in DEFAULT_RANGES.items():
        assert low <= getattr(defaults, name) <= high, name


@pytest.mark.parametrize(("setting", "problem"), [
    ("deferred_retry_seconds = 1e-300", "must be 60..86400, got 1e-300"),
    ("link_retry_seconds = inf", "must be 60..86400, got inf"),
    ("mta_open_interval_seconds = nan", "must be 60..86400, got nan"),
    ("expiration_seconds = 1e300", "must be 60..7776000, got 1e+300"),
    ("max_message_size = 100000000000", "must be 1024..104857600, got 100000000000"),
    ("max_recipients = 1.5", "expected an integer, got float"),
    ("smtp_max_connections = -1", "must be 1..1000, got -1"),
])
def test_defaults_out_of_range(tmp_path: Path, setting: str, problem: str) -> None:
    err = load_error(tmp_path, MINIMAL + f"[defaults]\n{setting}\n")
    assert (err.key, err.problem) == (f"defaults.{setting.split()[0]}", problem)


def test_a_bad_item_limit_of_zero_is_allowed() -> None:
    scenario = parse(MINIMAL + "[defaults]\nmrs_bad_item_limit = 0\nwizard_bad_item_limit = 0\n",
                     "x.toml")
    assert (scenario.defaults.mrs_bad_item_limit, scenario.defaults.wizard_bad_item_limit) == (0, 0)


MAILBOX = '[[mailboxes]]\naddress = "a@contoso.test"\nserver = "EX2003-A"\n'


@pytest.mark.parametrize(("extra", "key", "problem"), [
    (MAILBOX + "items = 1000000000\n", "mailboxes[0].items", "must be 0..100000, got 1000000000"),
    (MAILBOX + "items = -1\n", "mailboxes[0].items", "must be 0..100000, got -1"),
    ("[[users]]\ncount = 100001\n", "users[0].count", "must be 1..100000, got 100001"),
    ("[[users]]\ncount = -1\n", "users[0].count", "must be 1..100000, got -1"),
    ('[[users]]\ncount = "x"\n', "users[0].count", "expected an integer, got string"),
    ("[[users]]\ndigits = 400\n", "users[0].digits", "must be 1..9, got 400"),
    ("[[users]]\ncount = 11\nitems = 100000\n", "users[0].items",
     "the mailboxes would hold 1100000 items; at most 1000000 in all"),
    (MAILBOX + "[[users]]\ncount = 100000\n", "users[0].count",
     "the scenario would have 100001 mailboxes; at most 100000"),
    ('[[connectors]]\ntype = "site"\nsites = ["REDMOND", "LONDON"]\ncost = 101\n',
     "connectors[0].cost", "must be 1..100, got 101"),
    (MAILBOX + 'display_name = "Eve\\r\\nBcc: x"\n', "mailboxes[0].display_name",
     "must not contain control characters (line breaks, tabs)"),
    ('[[sites]]\nname = "' + "L" * 65 + '"\n', "sites[2].name", "at most 64 characters, got 65"),
])
def test_counts_and_names_out_of_range(tmp_path: Path, extra: str, key: str, problem: str
                                       ) -> None:
    text = MINIMAL + '[[sites]]\nname = "LONDON"\n' + extra
    err = load_error(tmp_path, text)
    assert (err.key, err.problem) == (key, problem)


def test_deeply_nested_arrays_are_one_error_not_a_recursion_error(tmp_path: Path) -> None:
    err = load_error(tmp_path, MINIMAL + "[rpc]\nallow = " + "[" * 5000 + "]" * 5000 + "\n")
    assert (err.key, err.problem) == ("-", "arrays or tables nested too deeply")


def test_a_file_over_a_mebibyte_is_refused(tmp_path: Path) -> None:
    err = load_error(tmp_path, MINIMAL + "#" * (1024 * 1024) + "\n")
    assert (err.key, err.problem) == ("-", "larger than 1048576 bytes")
