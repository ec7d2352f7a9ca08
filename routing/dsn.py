"""Delivery status notifications (RFC 3464): when they fall due, what they say, their bytes.

In: a server, an arrival time and a priority (``delay_due``, ``expiry_due``),
why pairs fail (``expired``, ``mta_gave_up``, ``unknown_recipient``,
``deleted_by_admin``, ``refused_by_smarthost``), and a ``Report`` of the
recipients to report on. Out: times on the lab clock, ``Failure`` records, and
the DSN itself: a ``multipart/report; report-type=delivery-status`` message
(``build``) with a null sender, in the words of the reporting server's Exchange
version. Pure: nothing here reads or writes the store. ``routing.categorizer``
sends a DSN through the same intake as new mail (``fail``, ``send_dsn``) and
``routing.expiry`` finds the pairs that are late or too old.

Loop safety: a message with a null sender never gets a DSN, and every DSN has
a null sender, so there is never a DSN about a DSN. A DSN that cannot be
delivered ends as NDR without a report (Exchange's badmail).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formatdate, make_msgid

from stores.topology import Defaults, Server

# Unicode categories a header value must not carry: controls, line and paragraph separators.
_LINE_BREAKING = frozenset({"Cc", "Zl", "Zp"})

# -- when: pure functions of the lab clock ---------------------------------------------------


def message_timeout(defaults: Defaults, priority: str) -> float:
    """The 5.5/2000 MTA message timeout of a message of this X.400 priority."""
    return {
        "urgent": defaults.mta_timeout_urgent_seconds,
        "non-urgent": defaults.mta_timeout_nonurgent_seconds,
    }.get(priority, defaults.mta_timeout_normal_seconds)


def delay_due(accepted_at: float, server: Server, defaults: Defaults) -> float | None:
    """When a message that arrived at ``accepted_at`` and still waits on ``server`` gets its
    delay notification: 12 h on 2000/2003, 4 h on 2007/2010, never on 5.5 (no SMTP)."""
    if not server.version.smtp_transport:
        return None
    if server.version.hub_transport:
        return accepted_at + defaults.delay_notification_2007_seconds
    return accepted_at + defaults.delay_notification_seconds


def expiry_due(accepted_at: float, server: Server, priority: str, defaults: Defaults) -> float:
    """When a message still queued on ``server`` expires: 2 days on 2000/2003 and on
    2007/2010, the MTA message timeout of its priority on 5.5."""
    if not server.version.smtp_transport:
        return accepted_at + message_timeout(defaults, priority)
    if server.version.hub_transport:
        return accepted_at + defaults.expiration_2007_seconds
    return accepted_at + defaults.expiration_seconds


# -- what: the failure and its words ---------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """Why pairs fail: RFC 3463 status, RFC 3464 Diagnostic-Code and the human text."""

    status: str
    diagnostic: str
    text: str
    kind: str  # short name for traces and the operator: "expired", "deleted", ...


def expired(server: Server) -> Failure:
    """The expiration timeout of the SMTP queues ran out."""
    if server.version.hub_transport:
        # exchange-facts.md, "Exchange 2007 / 2010": "550 4.4.7 QUEUE.Expired; message expired".
        return Failure("4.4.7", "smtp; 550 4.4.7 QUEUE.Expired; message expired",
                       "The message expired before it could be delivered.", "expired")
    # Exchange 2003's expiry NDR text (unconfirmed: not in exchange-facts.md).
    return Failure("4.4.7", "smtp; 400 4.4.7 Message delayed",
                   "Could not deliver the message in the time limit specified. Please retry or"
                   " contact your administrator.", "expired")


def mta_gave_up(why: str) -> Failure:
    """The 5.5/2000 MTA's message timeout or its open retries ran out."""
    return Failure("4.4.7", f"X-Exchange-MTA; {why}",
                   f"The message could not be delivered: {why}.", "expired")


def unknown_recipient() -> Failure:
    # exchange-facts.md: "The e-mail account does not exist at this organization. <server #5.1.1>".
    return Failure("5.1.1", "smtp; 550 5.1.1 User unknown",
                   "The e-mail account does not exist at this organization.", "unknown")


def deleted_by_admin() -> Failure:
    # Exchange 2007's "550 4.3.2 QUEUE.Admin" text; 2003's is unconfirmed.
    return Failure("4.3.2", "smtp; 550 4.3.2 QUEUE.Admin; message deleted by administrative"
                   " action", "The message was deleted by an administrator.", "deleted")


def refused_by_smarthost(code: int, reply: str) -> Failure:
    """A permanent refusal from the outbound smarthost; its enhanced code, if it sent one."""
    words = reply.split()
    status = words[0] if words and words[0].count(".") == 2 and words[0][0] in "245" else "5.0.0"
    return Failure(status, f"smtp; {code} {reply}",
                   f"The remote server refused the message: {code} {reply}", "refused")


# -- the report itself ------------------------------------------------------------------------


@dataclass(frozen=True)
class RecipientStatus:
    rcpt: str
    action: str  # "failed" or "delayed"
    status: str
    diagnostic: str
    text: str
    last_attempt: float
    will_retry_until: float | None = None


@dataclass(frozen=True)
class Report:
    """Everything ``build`` needs; all times are lab-clock epoch seconds."""

    server: Server
    domain: str
    sender: str
    subject: str
    arrival: float
    now: float
    original_headers: bytes
    recipients: tuple[RecipientStatus, ...] = field(default_factory=tuple)

    @property
    def delay(self) -> bool:
        return all(r.action == "delayed" for r in self.recipients)

    @property
    def fqdn(self) -> str:
        return f"{self.server.name}.{self.domain}"


def _date(epoch: float) -> str:
    return formatdate(epoch, usegmt=True)


def _span(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, hours, minutes = seconds // 86400, seconds % 86400 // 3600, seconds % 3600 // 60
    return f"{days} days, {hours} hours and {minutes} minutes"


def human_text(report: Report) -> str:
    """The part a person reads, in the words of the reporting server's Exchange version."""
    modern = report.server.version.hub_transport
    rcpts = report.recipients
    if report.delay and modern:
        left = max(r.will_retry_until or report.now for r in rcpts) - report.now
        return ("Delivery is delayed to these recipients or distribution lists:\n\n"
                + "".join(f"{r.rcpt}\n" for r in rcpts)
                + f"\nSubject: {report.subject}\n\nThis message hasn't been delivered yet."
                " Delivery will continue to be attempted.\n\nThe server will keep trying to"
                f" deliver this message for the next {_span(left)}. You'll be notified if the"
                " message can't be delivered by that time.\n")
    if report.delay:
        # The IIS / Exchange 2000-2003 SMTP delay notification.
        return ("This is an automatically generated Delivery Status Notification.\n\n"
                "THIS IS A WARNING MESSAGE ONLY.\n\nYOU DO NOT NEED TO RESEND YOUR MESSAGE.\n\n"
                "Delivery to the following recipients has been delayed.\n\n"
                + "".join(f"       {r.rcpt}\n" for r in rcpts))
    if modern:
        return ("Delivery has failed to these recipients or distribution lists:\n\n"
                + "".join(f"{r.rcpt}\n{r.text}\n\n" for r in rcpts)
                + "Diagnostic information for administrators:\n\n"
                f"Generating server: {report.fqdn}\n\n"
                + "".join(f"{r.rcpt}\n#{r.diagnostic.split(';', 1)[-1].strip()} ##\n\n"
                          for r in rcpts))
    return ("Your message did not reach some or all of the intended recipients.\n\n"
            f"      Subject:\t{report.subject}\n      Sent:\t{_date(report.arrival)}\n\n"
            "The following recipient(s) could not be reached:\n\n"
            + "".join(f"      {r.rcpt} on {_date(r.last_attempt)}\n            {r.text}\n"
                      f"            <{report.fqdn} #{r.status}>\n\n" for r in rcpts))


def _subject(report: Report) -> str:
    modern = report.server.version.hub_transport
    if report.delay:
        return f"Delivery delayed:{report.subject}" if modern else (
            "Delivery Status Notification (Delay)")
    return f"Undeliverable: {report.subject}"


def _header(value: str) -> str:
    """A header value, RFC 2047-encoded when it is not ASCII. Control characters and line
    separators from the original (a Subject with a vertical tab, a smarthost's reply) become
    spaces: the email package reads them as line ends, and would refuse the whole DSN as a
    header injection."""
    clean = "".join(" " if unicodedata.category(c) in _LINE_BREAKING else c
                    for c in value.encode("utf-8", "replace").decode("utf-8"))
    return clean if clean.isascii() else Header(clean, "utf-8").encode()


def _text_part(text: str, subtype: str) -> MIMEText:
    """A text part that stays readable: 7bit when ASCII, else quoted-printable UTF-8."""
    if text.isascii():
        return MIMEText(text, subtype, "us-ascii")
    utf8 = Charset("utf-8")
    utf8.body_encoding = QP
    return MIMEText(text, subtype, utf8)  # type: ignore[arg-type]


def build(report: Report) -> bytes:
    """The DSN as RFC 5322 bytes with CRLF line ends: multipart/report (RFC 3462) with the
    human text, message/delivery-status (RFC 3464) and the original's text/rfc822-headers."""
    msg = MIMEMultipart("report", report_type="delivery-status")
    modern = report.server.version.hub_transport
    msg["From"] = f"{'Microsoft Exchange' if modern else 'System Administrator'}" \
        f" <postmaster@{report.domain}>"
    msg["To"] = f"<{report.sender}>"
    msg["Subject"] = _header(_subject(report))
    msg["Date"] = _date(report.now)
    msg["Message-ID"] = make_msgid(domain=report.fqdn)
    msg["Auto-Submitted"] = "auto-replied"  # RFC 3834: never answer it automatically
    msg["X-Mailflow-DSN"] = "delay" if report.delay else "failure"
    msg.attach(_text_part(human_text(report), "plain"))

    status = Message()
    status["Content-Type"] = "message/delivery-status"
    per_message = Message()
    per_message["Reporting-MTA"] = f"dns; {report.fqdn}"
    per_message["Arrival-Date"] = _date(report.arrival)
    status.attach(per_message)
    for r in report.recipients:
        block = Message()
        block["Final-Recipient"] = _header(f"rfc822; {r.rcpt}")
        block["Action"] = r.action
        block["Status"] = r.status
        block["Diagnostic-Code"] = _header(r.diagnostic)
        block["Last-Attempt-Date"] = _date(r.last_attempt)
        if r.will_retry_until is not None:
            block["Will-Retry-Until"] = _date(r.will_retry_until)
        status.attach(block)
    msg.attach(status)

    msg.attach(_text_part(report.original_headers.decode("utf-8", "replace"), "rfc822-headers"))
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def original_headers(raw: bytes) -> bytes:
    """The header section of a stored message, without the blank line."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        head, found, _ = raw.partition(sep)
        if found:
            return head + b"\r\n"
    return raw
