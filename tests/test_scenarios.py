"""Scenario loader: built-ins match DESIGN.md; every error names file, key and problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailflow.scenarios import ScenarioError, builtin_names, load, parse
from stores.topology import ConnectorSpec, Defaults, Server, Version

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
    assert builtin_names() == ["exchange-2010", "mixed-2003"]


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
        Server("EX2010-A", Version("2010"), "HQ", 2526),
        Server("EX2010-B", Version("2010"), "HQ", 2527),
    )
    assert s.connectors == ()
    homes = {m.address: m.server for m in s.mailboxes}
    assert homes["frank@contoso.test"] == "EX2010-A"
    assert homes["grace@contoso.test"] == "EX2010-A"
    assert homes["heidi@contoso.test"] == "EX2007-A"
    users = [m for m in s.mailboxes if m.address.startswith("user")]
    assert len(users) == 50
    assert {"user001@contoso.test", "user050@contoso.test"} <= homes.keys()
    assert {m.server for m in users} == {srv.name for srv in s.servers}


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


def test_default_must_be_positive(tmp_path: Path) -> None:
    err = load_error(tmp_path, MINIMAL + "[defaults]\nitem_size = 0\n")
    assert err.key == "defaults.item_size"
    assert "positive" in err.problem


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
