"""AUTH of an endpoint: aiosmtpd's PLAIN and LOGIN exchanges, checked against the scenario.

In: the mechanism and the ``LoginPassword`` aiosmtpd decoded from the client. Out: its
``AuthResult``, with the named reply (235 or 535) to send. A server with ``auth = "any"``
takes every user and password; with ``auth = "logins"``, only the scenario's
``[[logins]]`` (docs/tls-and-auth.md).
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from aiosmtpd.smtp import AuthResult, LoginPassword

from mailflow.smtp import replies

# The mechanisms an endpoint offers: aiosmtpd's own (auth_PLAIN, auth_LOGIN).
MECHANISMS = ("LOGIN", "PLAIN")
# aiosmtpd 1.4's smtp_AUTH sets its deprecated Session.login_data itself, and logs a
# warning about it at every successful AUTH: noise for the lab's user, dropped here.
LOGIN_DATA_WARNING = "Session.login_data is deprecated"


def _not_login_data(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(LOGIN_DATA_WARNING)


logging.getLogger("mail.log").addFilter(_not_login_data)


class Authenticator:
    """aiosmtpd's ``authenticator`` callable for one server."""

    def __init__(self, mode: str, logins: tuple[tuple[str, str], ...]) -> None:
        self.mode = mode
        self.logins = {user.encode(): password.encode() for user, password in logins}

    def check(self, login: bytes, password: bytes) -> bool:
        if self.mode == "any":
            return True
        known = self.logins.get(login)
        return known is not None and hmac.compare_digest(known, password)

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str,
                 auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and self.check(*auth_data)
        reply = replies.S235_AUTHENTICATED if ok else replies.S535_BAD_CREDENTIALS
        return AuthResult(success=ok, handled=False, message=reply.line(), auth_data=auth_data)
