"""The fast path of MAIL FROM:/RCPT TO: agrees with aiosmtpd's ``_getaddr`` wherever it answers.

``plain_path`` parses ``<local@domain> [PARAMETERS]`` without email's header parser and leaves
everything else to ``_getaddr``. Its answer must be exactly ``_getaddr``'s (address, and the
parameters with ``None`` taken as ``""``, as ``SmtpSession._path`` takes them), and it must
answer for the paths ordinary clients send.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import example, given
from hypothesis import strategies as st

from mailflow.smtp.session import _PLAIN_PATH, SmtpSession, plain_path

ATEXT = "abcxyzABCXYZ0189!#$%&'*+/=?^_`{|}~-"
LABEL = "abzAZ09-_"


def getaddr(text: str) -> tuple[str | None, str]:
    """aiosmtpd's own parse, on a stand-in with the session's local-part limit."""
    stand_in = SimpleNamespace(local_part_limit=SmtpSession.local_part_limit)
    address, params = SMTP._getaddr(cast(SMTP, stand_in), text)
    return address, params or ""


def dotted(alphabet: str) -> st.SearchStrategy[str]:
    return st.lists(st.text(alphabet, min_size=1, max_size=6), min_size=1, max_size=3).map(
        ".".join)


PARAMS = st.sampled_from(["", " SIZE=2048", " BODY=8BITMIME SMTPUTF8", "\t SIZE=1",
                          " \x0c\xa0NOTIFY=NEVER", "  X"])
ORDINARY = st.builds(lambda local, domain, params: f"<{local}@{domain}>{params}",
                     dotted(ATEXT).filter(lambda local: not local.startswith("=?")),
                     dotted(LABEL), PARAMS)

# Pieces of everything else a path may hold: quoting, escapes, routes, comments, literals,
# encoded words, whitespace, UTF-8, stray specials.
PIECES = st.sampled_from([
    "<", ">", "@", ".", "..", '"', "\\", "(", ")", "(c)", "[", "]", "[1.2.3.4]", ",", ":", ";",
    " ", "\t", "\x0c", "\xa0", "=?", "=?utf-8?q?a?=", "?=", "@r.example:", "@a,@b:", "é", "ü",
    "\u2028", "\x00", "\x7f", "SIZE=1", "alice", "contoso.test", "a.b", "x", "-", "_", "=",
])
PATHLIKE = st.one_of(
    st.lists(st.one_of(PIECES, st.text(ATEXT, max_size=3)), max_size=12).map("".join),
    st.builds(lambda a, b: f"<{a}@{b}>", st.text(max_size=8), st.text(max_size=8)),
    st.text(max_size=20),
)
# Whatever the fast path's pattern matches, followed by anything.
MATCHED = st.builds(str.__add__, st.from_regex(_PLAIN_PATH, fullmatch=True),
                    st.one_of(PARAMS, PATHLIKE))


@given(ORDINARY)
@example("<alice@contoso.test>")
@example("<alice@contoso.test> SIZE=2190 BODY=8BITMIME")
@example("<first.last+tag@mail.example.net>")
@example("<SRS0=x1=ab=example.org=bounce@relay.example.com>")
def test_an_ordinary_path_takes_the_fast_path(text: str) -> None:
    assert plain_path(text) is not None
    assert plain_path(text) == getaddr(text)


@given(st.one_of(ORDINARY, MATCHED, PATHLIKE))
@example("<a@b> \x0c\u3000SIZE=1")  # the Unicode whitespace email's parser skips too
def test_the_fast_path_agrees_with_getaddr_whenever_it_answers(text: str) -> None:
    answer = plain_path(text)
    if answer is not None:
        assert answer == getaddr(text)


@pytest.mark.parametrize("text", [
    "<>", "alice@contoso.test", '<"a b"@contoso.test>', "<a\\ b@contoso.test>",
    "<@relay.example:alice@contoso.test>", "<alice@[127.0.0.1]>", "<jörg@contoso.test>",
    "<alice@contoso.test> (comment)", "<alice(comment)@contoso.test>", "<a..b@contoso.test>",
    "<.a@contoso.test>", "<alice@contoso..test>", "<alice@contoso.test", "<alice>",
    "<=?utf-8?q?alice?=@contoso.test>", "<alice@contoso.test>SIZE=1", "< alice@contoso.test>",
])
def test_everything_else_is_left_to_getaddr(text: str) -> None:
    assert plain_path(text) is None
