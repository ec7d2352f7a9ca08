"""MAIL FROM:/RCPT TO: paths: the RFC 5321 grammar (``strict_path``) and the fast path.

``strict_path`` takes what RFC 5321 §4.1.2 (with RFC 6531's UTF-8) calls a path, and
parameters after SP; the session answers 501 to anything else. The fast path of
MAIL FROM:/RCPT TO: agrees with aiosmtpd's ``_getaddr`` wherever it answers.

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

from mailflow.smtp.paths import _PLAIN_PATH, Path, plain_path, strict_path
from mailflow.smtp.session import SmtpSession

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


SP_PARAMS = st.sampled_from(["", " SIZE=2048", " BODY=8BITMIME SMTPUTF8", "  SIZE=1 X-Y=é"])
ORDINARY_SP = st.builds(lambda local, domain, params: f"<{local}@{domain}>{params}",
                        dotted(ATEXT).filter(lambda local: not local.startswith("=?")),
                        dotted(LABEL), SP_PARAMS)


@given(ORDINARY_SP)
@example("<alice@contoso.test> SIZE=2190 BODY=8BITMIME")
def test_an_ordinary_path_is_an_rfc_5321_path_and_the_fast_path_agrees(text: str) -> None:
    path = strict_path(text)
    assert path is not None
    assert plain_path(path.path) == (path.mailbox, "")
    assert path.params == text[len(path.path):].lstrip(" ")


@given(st.one_of(ORDINARY, MATCHED, PATHLIKE))
def test_the_fast_path_agrees_with_the_grammar_whenever_both_answer(text: str) -> None:
    path = strict_path(text)
    plain = plain_path(path.path) if path is not None else None
    if path is not None and plain is not None:
        assert plain == (path.mailbox, "")


@pytest.mark.parametrize(("text", "path"), [
    ("<>", Path("<>", "<>", "")),
    ("<Postmaster>", Path("<Postmaster>", "Postmaster", "")),
    ("<@r.example,@s.example:a@contoso.test> SIZE=1",
     Path("<@r.example,@s.example:a@contoso.test>", "a@contoso.test", "SIZE=1")),
    ('<"a b"@contoso.test>', Path('<"a b"@contoso.test>', '"a b"@contoso.test', "")),
    ("<alice@[127.0.0.1]>", Path("<alice@[127.0.0.1]>", "alice@[127.0.0.1]", "")),
    ("<alice@[IPv6:::1]>", Path("<alice@[IPv6:::1]>", "alice@[IPv6:::1]", "")),
    ("<jörg@bücher.example> SMTPUTF8",
     Path("<jörg@bücher.example>", "jörg@bücher.example", "SMTPUTF8")),
    # Grammatical; _getaddr decodes it, so the session compares and answers 553.
    ("<=?utf-8?q?bob?=@contoso.test>",
     Path("<=?utf-8?q?bob?=@contoso.test>", "=?utf-8?q?bob?=@contoso.test", "")),
])
def test_rfc_5321_paths_are_taken_apart(text: str, path: Path) -> None:
    assert strict_path(text) == path


@pytest.mark.parametrize("text", [
    "alice@contoso.test", "<alice@contoso.test", "alice@contoso.test>", "<alice>",
    "<alice@contoso.test> (comment)", "<alice(comment)@contoso.test>", "(c)<a@contoso.test>",
    "< alice@contoso.test>", "<alice@contoso.test >", "Alice <alice@contoso.test>",
    "<a..b@contoso.test>", "<.a@contoso.test>", "<alice@contoso..test>", "<alice@>",
    "<@contoso.test>", "<alice@contoso.test>SIZE=1", "<alice@contoso.test>\tSIZE=1",
    "<alice@contoso.test> \x0cSIZE=1", "<alice@contoso.test> =1", "<alice@contoso.test> SIZE=",
    "<a\u2028b@contoso.test>", "<a\xa0b@contoso.test>", '<"a\rb"@contoso.test>',
    "<a@b@contoso.test>", "<<a@contoso.test>>", "<@r.example alice@contoso.test>",
    "<alice@[1.2.3.4]x>",
])
def test_what_is_not_an_rfc_5321_path_is_refused(text: str) -> None:
    assert strict_path(text) is None
