"""The reverse-path of MAIL FROM: and the forward-path of RCPT TO:, as RFC 5321 writes them.

In: the text after ``FROM:`` or ``TO:``. Out: ``strict_path``, the path's parts when
the text is an RFC 5321 §4.1.2 ``Path`` (``Mailbox`` extended to UTF-8 by RFC 6531
§3.3), ``<>`` or ``<Postmaster>``, then ESMTP parameters each after one or more SP;
None for anything else (no angle brackets, a missing ``>``, a comment, folding
whitespace, a tab before the parameters), which the session answers 501. And
``plain_path``, the fast path for the ``<local@domain>`` nearly every client sends.

What the session acts on must be what the client wrote: email's header parser (under
aiosmtpd's ``_getaddr``) decodes RFC 2047 encoded-words, so ``<=?utf-8?q?bob?=@x>``
would become ``bob@x``. An encoded-word is not a mailbox name (RFC 2047 §5): the
session compares ``_getaddr``'s address with ``Path.mailbox`` and answers 553 when
they differ. Whether the mailbox is valid (dots, label lengths, IDNA) is
email-validator's business (``routing.addresses``), answered 553 too.
"""

from __future__ import annotations

import re
from typing import NamedTuple

# RFC 6531 §3.3 UTF8-non-ascii, less the C1 controls and whitespace (U+0085, U+00A0,
# U+2028, ...), which email's parser would take as folding or line breaks.
_UTF8 = r"[^\x00-\x9f\s]"
_ATEXT = rf"(?:[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~-]|{_UTF8})"
_DOT_STRING = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
# qtextSMTP (%d32-33 / %d35-91 / %d93-126 / UTF8-non-ascii) or a quoted pair (%d92 %d32-126).
_QUOTED = rf'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|{_UTF8}|\\[\x20-\x7e])*"'
# Labels of letters, digits, "-" and "_" (or U-labels); email-validator judges the rest.
_DOMAIN = rf"(?:[A-Za-z0-9_-]|{_UTF8})+(?:\.(?:[A-Za-z0-9_-]|{_UTF8})+)*"
# address-literal: "[" printable ASCII but "[", "\" and "]" "]"; email-validator judges it.
_LITERAL = r"\[[\x21-\x5a\x5e-\x7e]+\]"
_MAILBOX = rf"(?:{_DOT_STRING}|{_QUOTED})@(?:{_DOMAIN}|{_LITERAL})"
# A source route (A-d-l), which RFC 5321 §4.1.2 says to accept and ignore.
_ROUTE = rf"@{_DOMAIN}(?:,@{_DOMAIN})*:"
# esmtp-param: esmtp-keyword ["=" esmtp-value] (RFC 6531: the value may be UTF-8).
_PARAM = rf"[A-Za-z0-9][A-Za-z0-9-]*(?:=(?:[\x21-\x3c\x3e-\x7e]|{_UTF8})+)?"
_STRICT_PATH = re.compile(
    rf"(?:<>|<(?i:postmaster)>|<(?:{_ROUTE})?(?P<mailbox>{_MAILBOX})>)"
    rf"(?P<params>(?: +{_PARAM})*)"
)
# The path nearly every client sends: <local@domain>, the local part a dot-atom of ASCII
# atext (RFC 5322 §3.2.3) not opening with "=?" (email's parser decodes an RFC 2047 word
# there), the domain dot-separated labels of letters, digits, "-" and "_".
_PLAIN_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9_-]+"
_PLAIN_PATH = re.compile(
    rf"<((?!=\?){_PLAIN_ATEXT}(?:\.{_PLAIN_ATEXT})*@{_LABEL}(?:\.{_LABEL})*)>")


class Path(NamedTuple):
    """A path as written: ``mailbox`` without its source route (``<>`` for the null path,
    the text between the brackets for ``<Postmaster>``), ``params`` without leading SP."""

    path: str
    mailbox: str
    params: str


def strict_path(text: str) -> Path | None:
    """The parts of ``text`` when it is an RFC 5321/6531 path and parameters, else None."""
    match = _STRICT_PATH.fullmatch(text)
    if match is None:
        return None
    path = text[:match.start("params")]
    mailbox = match["mailbox"] or ("<>" if path == "<>" else path[1:-1])
    return Path(path, mailbox, match["params"].lstrip(" "))


def plain_path(text: str) -> tuple[str, str] | None:
    """(address, parameters) of ``<local@domain>``, alone or followed by whitespace and
    ESMTP parameters, exactly as aiosmtpd's ``_getaddr`` returns them; None for any other
    text (quoted local part, source route, comment, no brackets, domain literal, UTF-8, ...),
    which only ``_getaddr`` parses."""
    match = _PLAIN_PATH.match(text)
    if match is None:
        return None
    params = text[match.end():]
    if params:
        # email's parser skips the whitespace (str.lstrip) and comments after the ">";
        # parameters glued to it, or a comment, are left to _getaddr.
        if params[0] not in " \t":
            return None
        params = params.lstrip()
        if params.startswith("("):
            return None
    return match.group(1), params
