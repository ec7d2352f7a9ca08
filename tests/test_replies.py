"""The named SMTP replies: ``S<ddd>_...`` starts with ``ddd x.y.z`` of the same class."""

from __future__ import annotations

import re

import pytest

from mailflow.smtp import replies

NAME = re.compile(r"S(?P<code>[245]\d\d)_[A-Z0-9_]+")
# RFC 3463: class "." subject "." detail, subject and detail of 1 to 3 digits.
REPLY = re.compile(r"(?P<code>\d{3}) (?P<cls>\d)\.(?:0|[1-9]\d{0,2})\.(?:0|[1-9]\d{0,2})(?: |$)")


def _named() -> dict[str, str]:
    return {
        name: value for name, value in vars(replies).items()
        if name.startswith("S") and name[1:4].isdigit() and isinstance(value, str)
    }


NAMED = _named()


def test_the_module_names_its_replies() -> None:
    assert {"S250_QUEUED", "S550_RELAY_DENIED", "S550_UNKNOWN_USER",
            "S452_TOO_MANY_RECIPIENTS"} <= set(NAMED)


def test_every_reply_looking_constant_is_named_by_its_code() -> None:
    """A public string constant that reads like a reply must carry its code in its name."""
    for name, value in vars(replies).items():
        if name.startswith("_") or not isinstance(value, str) or not re.match(r"\d{3} ", value):
            continue
        match = NAME.fullmatch(name)
        assert match is not None, f"{name} = {value!r} is a reply without an S<ddd>_ name"
        assert value.startswith(match["code"] + " "), name


@pytest.mark.parametrize("name", sorted(NAMED))
def test_named_reply_starts_with_its_code_and_enhanced_code(name: str) -> None:
    value = NAMED[name]
    named = NAME.fullmatch(name)
    assert named is not None, f"{name} is not S<ddd>_<NAME> with a 2xx/4xx/5xx code"
    reply = REPLY.match(value)
    assert reply is not None, f"{name} = {value!r} lacks '<ddd> <x.y.z>'"
    assert reply["code"] == named["code"], f"{name} = {value!r}"
    assert reply["cls"] == named["code"][0], f"{name}: enhanced class differs from the reply's"
    assert replies.code(value) == int(named["code"])
