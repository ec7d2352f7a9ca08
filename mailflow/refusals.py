"""What an SMTP server refused a test sender with, as the reply line a user reads.

In: an exception from aiosmtplib (``mailflow send``, a lab file's ``send`` step). Out:
``550 5.1.1 User unknown (RCPT TO x)``, never aiosmtplib's repr. Imported only where
mail is sent, so the CLI's other commands do not load aiosmtplib.
"""

from __future__ import annotations

import aiosmtplib


def refusal_line(exc: Exception) -> str:
    """The reply line (or lines, ``;``-joined); a refusal of every recipient comes as
    SMTPRecipientsRefused holding each recipient's reply."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        return "; ".join(refusal_line(one) for one in exc.recipients)
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused):
        return f"{exc.code} {exc.message} (RCPT TO {exc.recipient})"
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{exc.code} {exc.message}"
    return str(exc)
