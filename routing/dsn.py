"""Delivery status notifications (RFC 3464): delay notifications and NDRs.

In: pairs that are late or too old (``run_due``, on the lab clock), and pairs
that fail for good (``fail``: expired in the MTA, deleted with an NDR, a
recipient unknown after acceptance, refused by the outbound smarthost).
Out: failed pairs in their final state (NDR, or DELETED for an operator's
delete), a trace of each on the original message, and one DSN per original
message and reporting server: a ``multipart/report; report-type=delivery-status``
message (``build``) with a null sender, accepted through the categorizer in
the caller's transaction and addressed to the original envelope sender. The
categorizer takes it from there: into the sender's mailbox when the sender is
local, else to the outbound smarthost, else queue ``unreachable``.

Loop safety: a message with a null sender never gets a DSN, and every DSN has
a null sender, so there is never a DSN about a DSN. A DSN that cannot be
delivered ends as NDR without a report (Exchange's badmail).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formatdate, make_msgid

from routing import categorizer, queues
from stores import messages
from stores.db import Tx
from stores.messages import Pair, PairState
from stores.topology import Defaults, Scenario, Server

TRANSPORT_VERSIONS = ("2007", "2010")


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
    if server.version == "5.5":
        return None
    if server.version in TRANSPORT_VERSIONS:
        return accepted_at + defaults.delay_notification_2007_seconds
    return accepted_at + defaults.delay_notification_seconds


def expiry_due(accepted_at: float, server: Server, priority: str, defaults: Defaults) -> float:
    """When a message still queued on ``server`` expires: 2 days on 2000/2003 and on
    2007/2010, the MTA message timeout of its priority on 5.5."""
    if server.version == "5.5":
        return accepted_at + message_timeout(defaults, priority)
    if server.version in TRANSPORT_VERSIONS:
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
    if server.version in TRANSPORT_VERSIONS:
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
    modern = report.server.version in TRANSPORT_VERSIONS
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
    modern = report.server.version in TRANSPORT_VERSIONS
    if report.delay:
        return f"Delivery delayed:{report.subject}" if modern else (
            "Delivery Status Notification (Delay)")
    return f"Undeliverable: {report.subject}"


def _header(value: str) -> str:
    """A header value, RFC 2047-encoded when it is not ASCII."""
    clean = value.encode("utf-8", "replace").decode("utf-8")
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
    modern = report.server.version in TRANSPORT_VERSIONS
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
        block["Final-Recipient"] = f"rfc822; {r.rcpt}"
        block["Action"] = r.action
        block["Status"] = r.status
        block["Diagnostic-Code"] = r.diagnostic
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


# -- sending ----------------------------------------------------------------------------------


def _send(tx: Tx, scenario: Scenario, at: Server, message: str,
          statuses: list[RecipientStatus], label: str, why: str) -> str | None:
    """Send one DSN (``label``: "NDR 4.4.7", "delay notification") about ``message`` from
    ``at``; None, and a trace, when none may be sent."""
    row = tx.conn.execute(
        "SELECT mail_from, subject, raw, accepted_at, dsn_of FROM messages WHERE id=?",
        (message,),
    ).fetchone()
    if not row["mail_from"] or row["dsn_of"]:
        for status in statuses:
            tx.trace(message, status.rcpt, at.name, "dsn",
                     f"no {label}: the sender is null (no DSN about a DSN)")
        return None
    report = Report(at, scenario.domains[0], row["mail_from"], row["subject"],
                    row["accepted_at"], tx.now, original_headers(bytes(row["raw"])),
                    tuple(statuses))
    dsn_id = categorizer.submit(tx, scenario, at.name, row["mail_from"], build(report),
                                dsn_of=message, summary=f"{label} about {message}: {why}")
    for status in statuses:
        tx.trace(message, status.rcpt, at.name, "dsn",
                 f"{label} sent as {dsn_id} to <{row['mail_from']}>")
    return dsn_id


def fail(tx: Tx, scenario: Scenario, pairs: Iterable[Pair], at: Server, failure: Failure,
         *, final: PairState = PairState.NDR) -> None:
    """End ``pairs`` (queued on ``at``) in ``final`` and send their sender one NDR per message."""
    by_message: dict[str, list[RecipientStatus]] = {}
    for pair in pairs:
        messages.place_final(tx, pair, final, last_error=f"{failure.status} {failure.diagnostic}")
        tx.trace(pair.message, pair.rcpt, at.name, final.value,
                 f"{failure.kind}: {failure.status} {failure.diagnostic}")
        tx.note("ndr", server=at.name, status=failure.status)
        by_message.setdefault(pair.message, []).append(RecipientStatus(
            pair.rcpt, "failed", failure.status, failure.diagnostic, failure.text, tx.now))
    for message, statuses in by_message.items():
        _send(tx, scenario, at, message, statuses, f"NDR {failure.status}", failure.text)


def _delay_status(queue: str) -> str:
    """RFC 3463 status of a delay: the store refused (4.2.0, as 2007's store driver says),
    a remote host does not answer (4.4.1), or no route yet (4.4.0)."""
    if queue == "deferred":
        return "4.2.0"
    if queues.is_outbound(queue):
        return "4.4.1"
    return "4.4.0"


# The columns the scheduler needs of a queued pair, and the pairs it looks at: unfrozen,
# in the queues the SMTP service (2007+: transport) reports delay and expiry for. Not the
# InTransitFolder (``holding``, a store folder) and not the MTA's queues (``mta:*``, whose
# message timeouts ``routing.mta`` applies).
_CANDIDATE = (
    "SELECT p.id, p.message, p.rcpt, p.server, p.queue, p.last_error, p.delay_notified_at,"
    " p.accepted_at, m.priority, m.mail_from, m.dsn_of FROM pairs p"
    f" JOIN messages m ON m.id = p.message WHERE p.server = ? AND p.queue IS NOT NULL"
    f" AND {queues.UNFROZEN} AND p.queue != '{categorizer.HOLDING}' AND p.queue NOT LIKE 'mta:%'"
)
# Each condition keeps SQLite on one index of the pairs of one server by arrival
# (``pairs_awaiting_delay`` or ``pairs_by_arrival``), so only pairs old enough are read.
_AWAITING_DELAY = " AND p.delay_notified_at IS NULL AND p.accepted_at"
_ANY = " AND p.accepted_at"
# X.400 priorities as conditions on the message (anything else counts as normal).
PRIORITIES = {
    "urgent": "m.priority = 'urgent'",
    "non-urgent": "m.priority = 'non-urgent'",
    "normal": "m.priority NOT IN ('urgent', 'non-urgent')",
}


def _expiry_offset(server: Server, defaults: Defaults) -> float:
    """The shortest time after arrival at which mail on ``server`` can expire."""
    return min(expiry_due(0.0, server, priority, defaults) for priority in PRIORITIES)


def _due_rows(conn: sqlite3.Connection, scenario: Scenario, now: float) -> list[sqlite3.Row]:
    """The candidate pairs old enough, on their server, for a delay notice not yet sent or
    for expiry; in pair order."""
    rows: dict[int, sqlite3.Row] = {}
    for server in scenario.servers:
        delay = delay_due(0.0, server, scenario.defaults)
        if delay is not None:
            for row in conn.execute(f"{_CANDIDATE}{_AWAITING_DELAY} <= ?",
                                    (server.name, now - delay)):
                rows[row["id"]] = row
        for row in conn.execute(f"{_CANDIDATE}{_ANY} <= ?",
                                (server.name, now - _expiry_offset(server, scenario.defaults))):
            rows[row["id"]] = row
    return [rows[key] for key in sorted(rows)]


def run_due(tx: Tx, scenario: Scenario) -> int:
    """Send every delay notification and expire every pair whose time has come; returns how
    many pairs were handled. Frozen mail waits: its time is looked at again when thawed."""
    defaults = scenario.defaults
    expiring: dict[str, list[Pair]] = {}
    delayed: dict[tuple[str, str], list[sqlite3.Row]] = {}
    for row in _due_rows(tx.conn, scenario, tx.now):
        server = scenario.server(row["server"])
        if tx.now >= expiry_due(row["accepted_at"], server, row["priority"], defaults):
            expiring.setdefault(server.name, []).append(
                messages.load(tx.conn, "p.id = ?", (row["id"],))[0])
            continue
        due = delay_due(row["accepted_at"], server, defaults)
        if (due is not None and tx.now >= due and row["delay_notified_at"] is None
                and row["mail_from"] and row["dsn_of"] is None):
            delayed.setdefault((server.name, row["message"]), []).append(row)
    for name, pairs in expiring.items():
        fail(tx, scenario, pairs, scenario.server(name), expired(scenario.server(name)))
    for (name, message), rows in delayed.items():
        server = scenario.server(name)
        statuses = [
            RecipientStatus(
                r["rcpt"], "delayed", _delay_status(r["queue"]),
                f"smtp; 400 {_delay_status(r['queue'])} {r['last_error'] or 'queued'}",
                "", tx.now, expiry_due(r["accepted_at"], server, r["priority"], defaults))
            for r in rows
        ]
        tx.conn.executemany("UPDATE pairs SET delay_notified_at=? WHERE id=?",
                            [(tx.now, r["id"]) for r in rows])
        _send(tx, scenario, server, message, statuses, "delay notification",
              "still queued on " + name)
    return sum(len(p) for p in expiring.values()) + sum(len(r) for r in delayed.values())


def next_due(conn: sqlite3.Connection, scenario: Scenario, after: float) -> float | None:
    """The first time after ``after`` at which a delay notification or an expiry falls due
    (for ``Lab.advance``, which stops at every due time on its way): per server, the first
    pair by arrival past each bound, found by one step along the arrival indexes."""
    defaults = scenario.defaults
    times: list[float] = []

    def first(condition: str, args: tuple[object, ...]) -> float | None:
        row = conn.execute(f"{_CANDIDATE}{condition} ORDER BY p.accepted_at LIMIT 1",
                           args).fetchone()
        return None if row is None else float(row["accepted_at"])

    for server in scenario.servers:
        delay = delay_due(0.0, server, defaults)
        if delay is not None:
            arrival = first(f"{_AWAITING_DELAY} > ? AND m.mail_from != ''",
                            (server.name, after - delay))
            if arrival is not None:
                times.append(arrival + delay)
        # 5.5 expires by priority (the MTA message timeout), the others by arrival alone.
        classes = PRIORITIES.items() if server.version == "5.5" else [("normal", "1")]
        for priority, condition in classes:
            expiry = expiry_due(0.0, server, priority, defaults)
            arrival = first(f"{_ANY} > ? AND {condition}", (server.name, after - expiry))
            if arrival is not None:
                times.append(arrival + expiry)
    # Rounding must never hand back a time that is not after ``after``: advance would loop.
    return min((t for t in times if t > after), default=None)
