"""Fault rules without a lab: their checks, the matcher, counts, throttles, seeded draws."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailflow.smtp.faultrules import MAX_PATTERN, LiveRule, compiled, rule

SERVERS = ("EX2003-A", "EX2003-B")


def live(**doc: Any) -> LiveRule:
    """A live rule (its remaining count its ``count``) from a rcpt 451 rule and ``doc``."""
    checked = rule({"stage": "rcpt", "action": "reply", "code": 451, **doc}, SERVERS)
    return LiveRule(1, checked, checked.count)


@given(st.integers(1, 50), st.integers(0, 120))
def test_a_count_is_never_overdrawn(count: int, tries: int) -> None:
    rule_ = live(count=count)
    assert sum(rule_.claim(0.0) for _ in range(tries)) == min(count, tries)
    assert rule_.remaining == count - min(count, tries)


def test_the_same_seed_draws_the_same_faults() -> None:
    first, second = (live(probability=0.3, seed=99) for _ in range(2))
    draws = [first.claim(0.0) for _ in range(200)]
    assert draws == [second.claim(0.0) for _ in range(200)]
    assert 0 < sum(draws) < 200


def test_matching_by_server_stage_addresses_and_window() -> None:
    rule_ = live(server="ex2003-a", sender="^bad@", recipient="alice", start=100, end=200)
    assert rule_.rule.server == "EX2003-A"  # the scenario's spelling
    assert rule_.matches("EX2003-A", "rcpt", "BAD@x.test", ("Alice@contoso.test",), 150)
    assert not rule_.matches("EX2003-B", "rcpt", "bad@x.test", ("alice@c.test",), 150)
    assert not rule_.matches("EX2003-A", "mail", "bad@x.test", ("alice@c.test",), 150)
    assert not rule_.matches("EX2003-A", "rcpt", "good@x.test", ("alice@c.test",), 150)
    assert not rule_.matches("EX2003-A", "rcpt", "bad@x.test", ("bob@c.test",), 150)
    assert not rule_.matches("EX2003-A", "rcpt", "bad@x.test", ("alice@c.test",), 200)
    assert live(server="*").matches("EX2003-B", "rcpt", "", (), 0)


def test_a_throttle_lets_through_its_rate_per_simulated_minute() -> None:
    rule_ = live(action="throttle", per_minute=2, code=None)
    assert [rule_.claim(t) for t in (0, 1, 2, 59, 60, 61, 62)] == \
        [False, False, True, True, False, False, True]


@pytest.mark.parametrize(("doc", "key"), [
    ({"stage": "mail", "action": "reply", "code": 451, "sender": "(?<=a)b"}, "sender"),
    ({"stage": "mail", "action": "reply", "code": 451, "sender": r"(a)\1"}, "sender"),
    ({"stage": "mail", "action": "reply", "code": 451, "sender": "["}, "sender"),
    ({"stage": "mail", "action": "reply", "code": 451, "sender": "a" * (MAX_PATTERN + 1)},
     "sender"),
    ({"stage": "connect", "action": "reply", "code": 421, "recipient": "x"}, "recipient"),
    ({"stage": "mail", "action": "reply", "code": 451, "text": "4.3.0 two\r\nlines"}, "text"),
    ({"stage": "mail", "action": "reply", "code": 451, "start": 10, "end": 5}, "end"),
    ({"stage": "mail", "action": "reply", "code": 451.5}, "code"),
    ({"stage": "mail", "action": "delay", "seconds": 601}, "seconds"),
    ({"stage": "mail", "action": "throttle"}, "per_minute"),
    ({"stage": "mail", "action": "reply", "code": 451, "count": 0}, "count"),
    ({"stage": "mail", "action": "reply", "code": True}, "code"),
])
def test_a_bad_rule_names_its_key(doc: dict[str, Any], key: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(key)}: "):
        rule(doc, SERVERS)


@given(st.text(max_size=40))
def test_any_pattern_is_refused_or_compiles(pattern: str) -> None:
    try:
        checked = rule({"stage": "mail", "action": "disconnect", "sender": pattern}, SERVERS)
    except ValueError:
        return
    compiled(checked.sender)


def test_a_pattern_that_would_backtrack_for_ever_in_re_is_linear_in_re2() -> None:
    # In Python's re, (a+)+$ on "aaa…ab" takes time exponential in the a's.
    rule_ = live(sender="(a+)+$", stage="mail")
    assert not rule_.matches("EX2003-A", "mail", "a" * 300 + "b", (), 0)
    assert rule_.matches("EX2003-A", "mail", "a" * 300, (), 0)
