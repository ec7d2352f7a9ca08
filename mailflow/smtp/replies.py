"""Every SMTP reply the endpoints send, named once: ``S<code>_<NAME> = Reply(code, text)``.

In: nothing. Out: the ``Reply`` constants the connection, the session and the
endpoint push, each rendered by ``Reply.line``. Each carries an RFC 3463
enhanced status code (the endpoints advertise ENHANCEDSTATUSCODES). Replies
that announce the end of the session name the server, as RFC 5321 §4.2 asks:
render them with ``hostname``. The greeting (220), the HELO/EHLO replies and
the 354 go-ahead carry no enhanced code (RFC 2034 §3): ``WITHOUT_ENHANCED_CODE``.
"""

from __future__ import annotations

from typing import NamedTuple


class Reply(NamedTuple):
    """One SMTP reply: its code and its text, which may name ``{fields}`` to fill in."""

    code: int
    text: str

    def line(self, **fields: str) -> str:
        """The reply line (without CRLF), its ``{fields}`` filled in from ``fields``."""
        return f"{self.code} {self.text.format(**fields) if fields else self.text}"


S214_HELP = Reply(214, "2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP VRFY HELP QUIT")
S221_BYE = Reply(221, "2.0.0 {hostname} Service closing transmission channel")
S250_OK = Reply(250, "2.0.0 OK")
S250_SENDER_OK = Reply(250, "2.1.0 Sender OK")
S250_RECIPIENT_OK = Reply(250, "2.1.5 Recipient OK")
# Exchange 2003 answers DATA with the queue id and this text.
S250_QUEUED = Reply(250, "2.6.0 <{queue_id}> Queued mail for delivery")
S252_CANNOT_VRFY = Reply(
    252, "2.0.0 Cannot VRFY user, but will accept message and attempt delivery")

# Closing the session (RFC 5321 §3.8: 421, then close).
S421_IDLE_TIMEOUT = Reply(421, "4.4.2 {hostname} Idle timeout, closing connection")
S421_TOO_MANY_CONNECTIONS = Reply(421, "4.3.2 {hostname} Too many connections, try again later")
S421_TOO_MANY_ERRORS = Reply(421, "4.7.0 {hostname} Too many errors, closing connection")
# Too many 550 5.1.1 in one session: a client probing for valid addresses.
S421_TOO_MANY_UNKNOWN = Reply(
    421, "4.7.0 {hostname} Too many unknown recipients, closing connection")
S421_SHUTTING_DOWN = Reply(421, "4.3.2 {hostname} Service shutting down, closing connection")

S451_LOCAL_ERROR = Reply(
    451, "4.3.0 Local error in processing; message not accepted, try again later")
S451_INTERNAL_ERROR = Reply(451, "4.3.0 Local error in processing, try again later")
S452_TOO_MANY_RECIPIENTS = Reply(452, "4.5.3 Too many recipients")
# The store's disk is full (RFC 3463 4.3.1): nothing was committed; try again later.
S452_STORAGE_FULL = Reply(452, "4.3.1 Insufficient system storage")

# Protocol errors: each counts toward the session's error limit.
# RFC 5321 §4.5.3.1.4: a command line holds at most 512 octets with its CRLF.
S500_LINE_TOO_LONG = Reply(500, "5.5.2 Line too long")
# RFC 5321 §4.5.3.1.6: a text line holds at most 1000 octets with its CRLF.
S500_TEXT_LINE_TOO_LONG = Reply(500, "5.5.2 Line too long: text lines hold at most 998 characters")
S500_SYNTAX_ERROR = Reply(500, "5.5.2 Syntax error, command unrecognized")
S500_NUL = Reply(500, "5.5.2 Syntax error: NUL character in command")
S500_UNRECOGNIZED = Reply(500, "5.5.1 Command unrecognized")
S501_SYNTAX = Reply(501, "5.5.4 Syntax error in parameters or arguments")
S501_HELO_SYNTAX = Reply(501, "5.5.4 Syntax: HELO|EHLO <domain>")
# The HELO/EHLO name goes into the Received: header: a CR, LF or other control or
# invisible character in it could start a header line of the client's choosing.
S501_HELO_CONTROL = Reply(501, "5.5.4 Syntax: HELO|EHLO <domain>: control characters not allowed")
S501_MAIL_SYNTAX = Reply(501, "5.5.4 Syntax: MAIL FROM:<address> [parameters]")
S501_RCPT_SYNTAX = Reply(501, "5.5.4 Syntax: RCPT TO:<address>")
S501_BAD_BODY = Reply(501, "5.5.4 BODY must be 7BIT or 8BITMIME")
S501_BAD_SIZE = Reply(501, "5.5.4 SIZE takes the message size in octets")
S501_SMTPUTF8_VALUE = Reply(501, "5.5.4 SMTPUTF8 takes no value")
S502_NOT_IMPLEMENTED = Reply(502, "5.5.1 Command not implemented")
S503_HELO_FIRST = Reply(503, "5.5.1 Send HELO or EHLO first")
S503_NESTED_MAIL = Reply(503, "5.5.1 Sender already specified")
S503_NEED_MAIL = Reply(503, "5.5.1 Need MAIL before RCPT")
S503_NEED_RCPT = Reply(503, "5.5.1 Need RCPT before DATA")
# RFC 5321 §2.3.8: lines end with CRLF only. A bare LF is how SMTP smuggling
# starts, so it ends the session (as Postfix's smtpd_forbid_bare_newline does).
S521_BARE_LF = Reply(
    521, "5.5.2 {hostname} Syntax error: bare <LF> received; lines end with <CR><LF>")

S550_RELAY_DENIED = Reply(550, "5.7.1 Unable to relay")
S550_UNKNOWN_USER = Reply(550, "5.1.1 User unknown")
# RFC 1870: SIZE; the same reply when DATA runs over the limit.
S552_TOO_BIG = Reply(552, "5.3.4 Message size exceeds fixed maximum message size")
S553_BAD_SENDER = Reply(553, "5.1.7 The sender address is not a valid mailbox")
S553_BAD_RECIPIENT = Reply(553, "5.1.3 The recipient address is not a valid mailbox")
# RFC 6531: a non-ASCII address without MAIL ... SMTPUTF8 is refused 553 with X.6.7.
S553_UTF8_NOT_DECLARED = Reply(553, "5.6.7 Non-ASCII address requires MAIL FROM with SMTPUTF8")
# RFC 6152: 8-bit content needs EHLO and must not be declared BODY=7BIT.
S554_8BIT_NOT_DECLARED = Reply(554, "5.6.0 Message contains 8-bit data: use EHLO and BODY=8BITMIME")
S555_UNKNOWN_PARAMETER = Reply(555, "5.5.4 Parameter not recognized or not implemented")

# Fault injection (mailflow.smtp.faults): a rule's reply when it gives a code but no
# text (the text of its code's class), and a throttle's when it gives neither. Emulation
# texts, not Exchange's.
S451_FAULT = Reply(451, "4.3.0 Temporary failure injected by the lab, try again later")
S554_FAULT = Reply(554, "5.3.0 Permanent failure injected by the lab")
S452_THROTTLED = Reply(452, "4.3.2 Message rate limit exceeded, try again later")

# The greeting, the HELO/EHLO reply and the go-ahead, which take no enhanced code.
S220_GREETING = Reply(220, "{hostname} {banner}")
S250_HELLO = Reply(250, "{hostname} Hello [{peer}]")
S354_GO_AHEAD = Reply(354, "End data with <CR><LF>.<CR><LF>")
WITHOUT_ENHANCED_CODE = frozenset({S220_GREETING, S250_HELLO, S354_GO_AHEAD})

# STARTTLS (RFC 3207) and AUTH (RFC 4954); the 220 before the handshake is aiosmtpd's own.
S235_AUTHENTICATED = Reply(235, "2.7.0 Authentication successful")
S503_ALREADY_AUTHENTICATED = Reply(503, "5.5.1 Already authenticated")
S503_AUTH_IN_TRANSACTION = Reply(503, "5.5.1 AUTH not permitted during a mail transaction")
S503_TLS_ACTIVE = Reply(503, "5.5.1 TLS already active")
S504_UNKNOWN_MECHANISM = Reply(504, "5.5.4 Unrecognized authentication type")
S530_STARTTLS_FIRST = Reply(530, "5.7.0 Must issue a STARTTLS command first")
S530_AUTH_REQUIRED = Reply(530, "5.7.0 Authentication required")
S535_BAD_CREDENTIALS = Reply(535, "5.7.8 Authentication credentials invalid")
S538_ENCRYPTION_REQUIRED = Reply(
    538, "5.7.11 Encryption required for requested authentication mechanism")
