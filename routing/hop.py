"""The hop token: a pair's identity carried over the SMTP hop between emulated servers.

In: a hop token (``<message>.<nonce>``, kept on the pairs of one message in one link
queue), the server it is sent to, and the lab's secret (``stores.meta.hop_secret``). Out:
the ``X-Mailflow-Hop`` header the transport puts on top of the message (``header``), and
on the receiving side the header taken off again (``split``) and the token it carried if,
and only if, its MAC verifies (``verify``).

Why a MAC: a hop token makes the receiver answer 250 for pairs it already holds (a resend
after a lost 250) without storing anything. Queue ids are readable through the open API,
so a token any client could write would let it have mail acknowledged and dropped. The
MAC is an HMAC-SHA-256 over the token and the receiving server, with a secret only the lab
knows: a token for one server does not verify at another, and one that does not verify
is removed and its mail taken as new mail.
"""

from __future__ import annotations

import hashlib
import hmac

HOP_HEADER = b"X-Mailflow-Hop"
_PREFIX = HOP_HEADER + b": "


def _mac(key: bytes, token: str, target: str) -> str:
    # A line break is in neither a token nor a server name: the two cannot run together.
    return hmac.new(key, f"{token}\n{target}".encode(), hashlib.sha256).hexdigest()


def header(key: bytes, token: str, target: str) -> bytes:
    """The header line (CRLF included) that carries ``token`` to server ``target``."""
    return _PREFIX + f"{token}.{_mac(key, token, target)}".encode() + b"\r\n"


def split(data: bytes) -> tuple[str | None, bytes]:
    """The value of a hop header on top of ``data`` (None if there is none) and ``data``
    without it. Its continuation lines go with it: left behind, they would fold into the
    Received header the receiver puts on top."""
    if not data.startswith(_PREFIX):
        return None, data
    line, _, rest = data.partition(b"\r\n")
    while rest.startswith((b" ", b"\t")):
        rest = rest.partition(b"\r\n")[2]
    return line[len(_PREFIX):].decode("ascii", "replace").strip(), rest


def verify(key: bytes, value: str, target: str) -> str | None:
    """The token of a hop header's ``value`` received by server ``target``; None when its
    MAC does not verify."""
    token, dot, mac = value.rpartition(".")
    if not dot or not token:
        return None
    expected = _mac(key, token, target)
    # As bytes: compare_digest refuses str with non-ASCII characters, which a client may send.
    return token if hmac.compare_digest(expected.encode(), mac.encode()) else None
