"""The named SMTP replies: ``S<ddd>_... = Reply(ddd, "x.y.z ...")``, the class of ddd."""

from __future__ import annotations

import re

import pytest

from mailflow.smtp import replies
from mailflow.smtp.replies import Reply

NAME = re.compile(r"S(?P<code>[2345]\d\d)_[A-Z0-9_]+")
# RFC 3463: class "." subject "." detail, subject and detail of 1 to 3 digits.
ENHANCED = re.compile(r"(?P<cls>\d)\.(?:0|[1-9]\d{0,2})\.(?:0|[1-9]\d{0,2})(?: |$)")


def _named() -> dict[str, Reply]:
    return {name: value for name, value in vars(replies).items() if isinstance(value, Reply)}


NAMED = _named()


def test_the_module_names_its_replies() -> None:
    assert {"S250_QUEUED", "S550_RELAY_DENIED", "S550_UNKNOWN_USER",
            "S452_TOO_MANY_RECIPIENTS", "S220_GREETING"} <= set(NAMED)


def test_every_reply_looking_constant_is_a_named_reply() -> None:
    """A public string constant that reads like a reply must be a Reply, named by its code."""
    for name, value in vars(replies).items():
        if name.startswith("_") or not isinstance(value, str):
            continue
        assert not re.match(r"\d{3} ", value), f"{name} = {value!r} is a reply but not a Reply"


@pytest.mark.parametrize("name", sorted(NAMED))
def test_named_reply_carries_its_code_and_enhanced_code(name: str) -> None:
    reply = NAMED[name]
    named = NAME.fullmatch(name)
    assert named is not None, f"{name} is not S<ddd>_<NAME>"
    assert reply.code == int(named["code"]), f"{name} = {reply!r}"
    assert reply.line().startswith(f"{named['code']} "), name
    if reply in replies.WITHOUT_ENHANCED_CODE:
        assert ENHANCED.match(reply.text) is None, f"{name} takes no enhanced code"
        return
    enhanced = ENHANCED.match(reply.text)
    assert enhanced is not None, f"{name} = {reply!r} lacks '<x.y.z>'"
    assert enhanced["cls"] == named["code"][0], f"{name}: enhanced class differs from the reply's"


def test_templated_replies_are_rendered_with_their_fields() -> None:
    assert replies.S250_QUEUED.line(queue_id="1A2B") == \
        "250 2.6.0 <1A2B> Queued mail for delivery"
    assert replies.S221_BYE.line(hostname="ex.test") == \
        "221 2.0.0 ex.test Service closing transmission channel"
    assert replies.S250_OK.line() == "250 2.0.0 OK"
