"""The application under test: it mails a welcome note over SMTP with the standard library,
and tries again later when the server says 4xx (as a real mailer would)."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage


def send_welcome(host: str, port: int, to: str) -> bool:
    """Send the welcome note to ``to``; False when the server asked to try again later."""
    message = EmailMessage()
    message["From"] = "app@example.net"
    message["To"] = to
    message["Subject"] = "Welcome aboard"
    message.set_content("Your account is ready.\n")
    try:
        with smtplib.SMTP(host, port, timeout=30) as smtp:
            smtp.send_message(message)
    except smtplib.SMTPRecipientsRefused as exc:
        if all(400 <= code < 500 for code, _ in exc.recipients.values()):
            return False
        raise
    return True
