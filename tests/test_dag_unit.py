"""DAG databases (issue 19) without a lab: each DataMoveReplicationConstraint decided over
copies in one and two sites, and the ``[[databases]]`` of a scenario."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

from mailflow.actions.databases import COPY_STATES
from mailflow.moves.data_guarantee import constraint_met
from mailflow.scenarios import ScenarioError, load, parse
from stores.databases import CopyStatus
from stores.topology import Defaults
from tests.test_state_machines import walk

R, D = "REDMOND", "DUBLIN"
UP, LAGS = True, False


@pytest.mark.parametrize(("constraint", "passives", "met"), [
    # One site: the active copy and its passive copies are all in REDMOND.
    ("None", [], True),
    ("None", [(R, LAGS)], True),
    ("SecondCopy", [], False),
    ("SecondCopy", [(R, LAGS)], False),
    ("SecondCopy", [(R, LAGS), (R, UP)], True),
    ("SecondDatacenter", [(R, UP)], False),
    ("AllDatacenters", [(R, UP), (R, LAGS)], True),
    ("AllDatacenters", [(R, LAGS)], False),
    ("AllCopies", [(R, UP), (R, LAGS)], False),
    ("AllCopies", [(R, UP), (R, UP)], True),
    # Two sites: a passive copy in DUBLIN too.
    ("SecondCopy", [(R, LAGS), (D, UP)], True),
    ("SecondDatacenter", [(R, UP), (D, LAGS)], False),
    ("SecondDatacenter", [(R, LAGS), (D, UP)], True),
    ("AllDatacenters", [(R, UP), (D, LAGS)], False),
    ("AllDatacenters", [(R, LAGS), (D, UP)], True),
    ("AllCopies", [(R, UP), (D, LAGS)], False),
    ("AllCopies", [(R, UP), (D, UP)], True),
])
def test_each_constraint_in_one_and_two_sites(constraint: str, passives: list[tuple[str, bool]],
                                              met: bool) -> None:
    assert constraint_met(constraint, R, passives) is met


def test_the_dag_scenario() -> None:
    s = load("exchange-2010-dag")
    assert {server.site for server in s.servers} == {R, D} and len(s.servers) == 4
    db01 = s.databases[0]
    assert (db01.name, db01.active_server, db01.constraint) == ("DAG-DB01", "EX2010-R1",
                                                                "SecondCopy")
    assert {c.site for c in db01.copies} == {R, D}
    alice = next(m for m in s.mailboxes if m.address == "alice@contoso.test")
    assert (alice.database, alice.server) == ("DAG-DB01", "EX2010-R1")


def test_data_guarantee_defaults_are_explicit() -> None:
    d = Defaults()
    # Seed 001's 5 minutes, not the fact sheet's unconfirmed 10 s; DataGuaranteeTimeout 30 min.
    assert (d.enable_data_guarantee_check, d.data_guarantee_check_period_seconds,
            d.data_guarantee_timeout_seconds) == (1, 300.0, 1800.0)


BASE = """name = "x"
[organization]
name = "C"
domains = ["c.test"]
[[sites]]
name = "A"
[[servers]]
name = "S1"
version = "2010"
site = "A"
[[servers]]
name = "S2"
version = "2010"
site = "A"
[[servers]]
name = "OLD"
version = "2007"
site = "A"
"""


def _db(copies: str, extra: str = "") -> str:
    return BASE + f'[[databases]]\nname = "DB1"\n{extra}' + "".join(
        f'[[databases.copies]]\nserver = "{c}"\n' for c in copies.split())


def test_constraint_defaults_to_second_copy_only_with_a_copy() -> None:
    assert parse(_db("S1 S2"), "t").databases[0].constraint == "SecondCopy"
    assert parse(_db("S1"), "t").databases[0].constraint == "None"
    chosen = parse(_db("S1 S2", 'data_move_replication_constraint = "AllCopies"\n'), "t")
    assert chosen.databases[0].constraint == "AllCopies"


@pytest.mark.parametrize(("text", "problem"), [
    (_db("S1 NOPE"), "unknown server 'NOPE'"),
    (_db("S1 OLD"), "only Exchange 2010 servers are DAG members"),
    (_db("S1 S1"), "already holds a copy"),
    (_db("S1", 'data_move_replication_constraint = "Most"\n'), "unknown constraint 'Most'"),
    (BASE + '[[databases]]\nname = "DB1"\n', "at least one copy"),
    (BASE + '[[mailboxes]]\naddress = "a@c.test"\ndatabase = "DB9"\n', "unknown database"),
])
def test_bad_databases_are_refused(text: str, problem: str) -> None:
    with pytest.raises(ScenarioError, match=problem):
        parse(text, "t")


# The copy states walked by Hypothesis: every allowed change goes, every other is refused.
CopyWalk = walk(COPY_STATES, CopyStatus.MOUNTED)


def test_copy_state_machine() -> None:
    run_state_machine_as_test(CopyWalk, settings=settings(max_examples=50, deadline=None))
