"""The categorizer: accepted mail in, each recipient routed to its next place out.

In: a ``Submission`` from an SMTP endpoint (new mail, or a pair arriving over
the SMTP hop from another emulated server), a DSN the lab generated
(``submit``), and pairs handed back by deferred delivery or a move. Out: each
(message, recipient) pair resolved through the directory to its home server
and then delivered by the store driver, parked in ``deferred`` when the store
answers ecMailboxInTransit, put in a link queue ``smtp:<SERVER>`` for the
transport, or carried across an internal MTA hop. A recipient outside the
organization goes to queue ``smarthost`` when the lab has an outbound
smarthost, else waits in ``unreachable``; a recipient of an accepted domain
that the directory no longer knows is NDR'd (5.1.1, ``routing.dsn``).
All of it happens inside the caller's transaction, so the 250 that follows the
commit covers every step taken.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import secrets
import sqlite3
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import formatdate

from email_validator import EmailNotValidError, validate_email

from routing import connectors, deferred, dsn
from stores import directory, messages, services
from stores.db import Tx
from stores.driver import Delivery, put_item, verdict
from stores.errors import MapiError
from stores.mailbox import INBOX
from stores.messages import SMARTHOST, Pair, PairState
from stores.topology import Scenario, Server

# Carries a pair's identity across the SMTP hop between emulated servers, so a
# retransmission after a lost 250 is recognised instead of delivered twice.
HOP_HEADER = b"X-Mailflow-Hop"
# The 5.5/2000 InTransitFolder of a store, as a queue id.
HOLDING = "holding"


class Verdict(enum.Enum):
    OK = "ok"
    BAD_SYNTAX = "bad syntax"
    RELAY_DENIED = "relay denied"
    UNKNOWN_USER = "unknown user"


# Validation is a pure function of the address, and test traffic repeats a few addresses
# thousands of times: each is validated once, not at MAIL, RCPT and again when stored.
@functools.lru_cache(maxsize=4096)
def normalize(address: str, *, smtputf8: bool = False) -> str | None:
    """The canonical form of an address, or None when it is not a valid mailbox."""
    try:
        # test_environment admits the reserved .test domain the built-in labs use.
        checked = validate_email(
            address, check_deliverability=False, allow_smtputf8=smtputf8, test_environment=True
        )
    except EmailNotValidError:
        return None
    return str(checked.normalized).lower()


@functools.lru_cache(maxsize=4096)
def valid_sender(address: str) -> bool:
    """Senders are checked for syntax only: test tools send as root@<hostname> or @localhost."""
    local, _, domain = address.rpartition("@")
    if domain.lower() == "localhost":
        address = f"{local}@localhost.test"
    try:
        # test_environment: the organization's own .test domains are valid senders too.
        validate_email(address, check_deliverability=False, allow_smtputf8=True,
                       globally_deliverable=False, allow_domain_literal=True,
                       test_environment=True)
    except EmailNotValidError:
        return False
    return True


def check_recipient(
    scenario: Scenario, known: frozenset[str], address: str, peer: str = ""
) -> Verdict:
    """A recipient in an accepted domain must be a known address; any other domain is
    relaying, refused unless the client ``peer`` (an IP address) is in relay_networks."""
    canonical = normalize(address, smtputf8=True)
    if canonical is None:
        return Verdict.BAD_SYNTAX
    if not scenario.accepts_domain(canonical.rsplit("@", 1)[1]):
        return Verdict.OK if may_relay(scenario, peer) else Verdict.RELAY_DENIED
    return Verdict.OK if canonical in known else Verdict.UNKNOWN_USER


@functools.lru_cache(maxsize=16)
def _networks(specs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(spec) for spec in specs)


def may_relay(scenario: Scenario, peer: str) -> bool:
    """Whether a client at ``peer`` may relay: only from the scenario's relay_networks."""
    if not scenario.relay_networks:
        return False
    try:
        ip = ipaddress.ip_address(peer.split("%", 1)[0])  # no IPv6 zone
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in _networks(scenario.relay_networks))


@dataclass(frozen=True)
class Submission:
    server: str
    peer: str
    helo: str
    mail_from: str
    rcpts: tuple[str, ...]
    data: bytes


def _received(sub: Submission, queue_id: str, domain: str) -> bytes:
    return (
        f"Received: from {sub.helo or 'unknown'} ([{sub.peer}]) by {sub.server}.{domain}"
        f" with ESMTP id {queue_id}; {formatdate(localtime=False)}\r\n"
    ).encode()


def priority(headers: Message) -> str:
    """X.400 priority from the Priority, Importance or X-Priority header (RFC 2156 mapping)."""
    value = str(headers.get("Priority", "")).strip().lower()
    if value in ("urgent", "non-urgent", "normal"):
        return value
    importance = str(headers.get("Importance", "")).strip().lower()
    x_priority = str(headers.get("X-Priority", "")).strip()[:1]
    if importance == "high" or x_priority in ("1", "2"):
        return "urgent"
    if importance == "low" or x_priority in ("4", "5"):
        return "non-urgent"
    return "normal"


def _split_hop(data: bytes) -> tuple[str | None, bytes]:
    """Take our hop header off the top of a message, if it is there."""
    prefix = HOP_HEADER + b": "
    if not data.startswith(prefix):
        return None, data
    line, _, rest = data.partition(b"\r\n")
    return line[len(prefix):].decode("ascii", "replace").strip(), rest


def accept(tx: Tx, scenario: Scenario, sub: Submission) -> str:
    """Commit a submission and route it; returns the queue id the 250 reply names."""
    token, data = _split_hop(sub.data)
    if token is not None:
        message = _take_hop(tx, scenario, sub, token, data)
        if message is not None:
            return message
    queue_id = secrets.token_hex(8).upper()
    raw = _received(sub, queue_id, scenario.domains[0]) + data
    tx.note("accepted", server=sub.server)
    client = f"{sub.helo or 'unknown'} [{sub.peer}]"
    _store(tx, scenario, sub, queue_id, raw, f"SMTP from <{sub.mail_from}>, client {client}")
    return queue_id


def submit(tx: Tx, scenario: Scenario, server: str, rcpt: str, data: bytes, *,
           dsn_of: str, summary: str) -> str:
    """Accept a DSN generated on ``server`` about message ``dsn_of``: stored with a null
    sender and routed to ``rcpt`` like mail received over SMTP; returns its queue id."""
    fqdn = f"{server}.{scenario.domains[0]}"
    sub = Submission(server, "", fqdn, "", (rcpt,), data)
    queue_id = secrets.token_hex(8).upper()
    received = (f"Received: by {fqdn} (mailflow DSN) id {queue_id};"
                f" {formatdate(tx.now, usegmt=True)}\r\n").encode()
    _store(tx, scenario, sub, queue_id, received + data, f"DSN from {server}: {summary}",
           dsn_of=dsn_of, summary=summary)
    return queue_id


def _store(tx: Tx, scenario: Scenario, sub: Submission, queue_id: str, raw: bytes,
           how: str, *, dsn_of: str | None = None, summary: str | None = None) -> None:
    """Insert a new message and one pair per recipient, each traced and routed."""
    # Only the header section is parsed: the body can be megabytes, and nothing here needs it.
    headers = BytesHeaderParser().parsebytes(raw.partition(b"\r\n\r\n")[0])
    urgency = priority(headers)
    tx.conn.execute(
        "INSERT INTO messages(id, message_id, mail_from, subject, size, raw, accepted_server,"
        " accepted_at, accepted_real, priority, dsn_of, dsn_summary)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            queue_id,
            str(headers.get("Message-ID", "")).strip(),
            sub.mail_from,
            str(headers.get("Subject", "")),
            len(raw),
            raw,
            sub.server,
            tx.now,
            tx.real,
            urgency,
            dsn_of,
            summary,
        ),
    )
    at = scenario.server(sub.server)
    for rcpt in dict.fromkeys(normalize(r, smtputf8=True) or r.lower() for r in sub.rcpts):
        tx.trace(queue_id, rcpt, sub.server, "accepted", how)
        # In "local" now; its row is written once routing has placed it (messages.place_*).
        pair = Pair(id=0, message=queue_id, rcpt=rcpt, mailbox=None, state=PairState.LOCAL,
                    server=sub.server, queue="local", queued_at=tx.now, attempts=0,
                    next_attempt=None, first_refused_at=None, frozen=False,
                    accepted_at=tx.now, size=len(raw), priority=urgency, stored=False)
        route(tx, scenario, pair, at)


def _take_hop(tx: Tx, scenario: Scenario, sub: Submission, token: str, data: bytes) -> str | None:
    """Receive pairs relayed from another emulated server; None if the token is not ours."""
    message = token.split(".", 1)[0]
    pairs = messages.load(
        tx.conn, "p.hop_token = ? AND p.queue = ?", (token, f"smtp:{sub.server}")
    )
    if not pairs:
        if tx.conn.execute("SELECT 1 FROM messages WHERE id=?", (message,)).fetchone() is None:
            return None
        # Already taken: the sender lost our 250 and sent again. Answer 250, change nothing.
        tx.trace(message, None, sub.server, "duplicate", "retransmission over the SMTP hop ignored")
        return message
    raw = _received(sub, message, scenario.domains[0]) + data
    tx.conn.execute("UPDATE messages SET raw=?, size=? WHERE id=?", (raw, len(raw), message))
    tx.note("accepted", server=sub.server)
    at = scenario.server(sub.server)
    for pair in pairs:
        source = pair.server
        messages.carry(pair, sub.server, "local")  # its row is written where routing puts it
        tx.trace(message, pair.rcpt, source, "relayed", f"to {sub.server} over SMTP")
        tx.trace(message, pair.rcpt, sub.server, "received", f"from {source} [{sub.peer}]")
        tx.note("rerouted", server=source, transport="smtp")
        route(tx, scenario, pair, at)
    return message


def _hop_token(conn: sqlite3.Connection, pair: Pair, server: str, queue: str) -> str:
    """One token per message per link, so the transport relays them in one transaction."""
    # The unary + keeps SQLite on the (message, rcpt) index: planned on the queue index,
    # a release of N pairs into one link queue scanned that queue N times.
    row = conn.execute(
        "SELECT hop_token FROM pairs WHERE message=? AND +server=? AND +queue=?"
        " AND hop_token IS NOT NULL LIMIT 1",
        (pair.message, server, queue),
    ).fetchone()
    return str(row[0]) if row else f"{pair.message}.{secrets.token_hex(8)}"


def route(tx: Tx, scenario: Scenario, pair: Pair, at: Server) -> None:
    """Take ``pair``, which is on server ``at``, as far as it can go now."""
    home = directory.lookup(tx.conn, pair.rcpt, store=at.name)
    if home is None:
        domain = pair.rcpt.rpartition("@")[2]
        if scenario.accepts_domain(domain):
            # Accepted while it existed (or its mail waited), gone from the directory now.
            dsn.fail(tx, scenario, [pair], at, dsn.unknown_recipient())
        else:  # relayed from relay_networks, or a DSN to an external sender
            _external(tx, scenario, pair, at, domain)
        return
    pair.mailbox = home.address  # written with the pair's next place
    target = scenario.server(home.server)
    hop = connectors.next_hop(tx.conn, at, target)
    if hop.transport == "local":
        if pair.queue != deferred.QUEUE:  # a retry is traced by the store's answer alone
            tx.trace(pair.message, pair.rcpt, at.name, "categorized",
                     f"home {target.name}: local delivery")
        _deliver_locally(tx, scenario, pair, at, home.in_transit)
    elif hop.transport == "smtp":
        assert hop.queue is not None
        token = _hop_token(tx.conn, pair, at.name, hop.queue)
        messages.place_queued(tx, pair, at.name, hop.queue, next_attempt=tx.now, hop_token=token)
        tx.trace(pair.message, pair.rcpt, at.name, "categorized",
                 f"home {target.name}: {hop.queue}")
        tx.note("link", server=at.name, target=target.name)
    elif hop.mta:
        assert hop.queue is not None
        to_mta(tx, pair, at, hop.queue)
    else:
        _unreachable(tx, pair, at, f"no route from site {at.site} to site {target.site}")


def to_mta(tx: Tx, pair: Pair, at: Server, queue: str) -> None:
    """Hand a pair to ``at``'s MTA, in queue ``queue``; routing.mta transfers it when due."""
    messages.place_queued(tx, pair, at.name, queue, next_attempt=tx.now)
    tx.trace(pair.message, pair.rcpt, at.name, "categorized", f"MTA queue {queue}")
    tx.note("mta", server=at.name)


def _deliver_locally(tx: Tx, scenario: Scenario, pair: Pair, at: Server,
                     in_transit: bool | None) -> None:
    result = verdict(pair, in_transit)
    if result is Delivery.DELIVERED:
        messages.place_final(tx, pair, PairState.DELIVERED)
        put_item(tx.conn, at.name, pair, tx.now)
        tx.trace(pair.message, pair.rcpt, at.name, "delivered",
                 f"mailbox {pair.mailbox}, folder {INBOX}")
        tx.note("delivered", server=at.name)
        tx.note("delivery_latency", tx.now - pair.accepted_at, server=at.name)
        if pair.first_refused_at is not None:
            tx.note("deferral", tx.now - pair.first_refused_at, server=at.name)
        return
    assert result.error is not None
    tx.note("store_failure", server=at.name, error=result.error.name)
    tx.trace(pair.message, pair.rcpt, at.name, "refused", result.error.describe())
    if result is Delivery.IN_TRANSIT:
        tx.event(
            "MSExchangeIS", 9660, "Error", at.name,
            f"User {pair.mailbox} failed to log on because their mailbox is in the process"
            " of being moved.", category="General",
        )
        if at.legacy:
            _hold(tx, pair, at, result.error)
        else:
            deferred.defer(tx, pair, at.name, scenario.defaults.deferred_retry_seconds,
                           result.error)
    else:
        _unreachable(tx, pair, at, result.error.describe())


def _hold(tx: Tx, pair: Pair, at: Server, error: MapiError) -> None:
    """5.5/2000: the store writes the mail into the mailbox's InTransitFolder (Q277911)."""
    messages.place_queued(tx, pair, at.name, HOLDING, last_error=f"{error.describe()}: held in"
                          " the InTransitFolder until the move ends")
    pair.first_refused_at = tx.now
    tx.conn.execute("UPDATE pairs SET first_refused_at=? WHERE id=?", (tx.now, pair.id))
    tx.trace(pair.message, pair.rcpt, at.name, "held", "InTransitFolder (queue holding)")
    tx.note("deferred", server=at.name, queue=HOLDING)


def _external(tx: Tx, scenario: Scenario, pair: Pair, at: Server, domain: str) -> None:
    """A recipient outside the organization: to the outbound smarthost, if there is one."""
    if scenario.smarthost:
        messages.place_queued(tx, pair, at.name, SMARTHOST, next_attempt=tx.now)
        tx.trace(pair.message, pair.rcpt, at.name, "categorized",
                 f"external domain {domain}: queue {SMARTHOST} ({scenario.smarthost})")
        tx.note("smarthost", server=at.name)
        return
    why = f"no connector to the external domain {domain}"
    row = tx.conn.execute("SELECT dsn_summary FROM messages WHERE id=?", (pair.message,)).fetchone()
    if row is not None and row[0]:
        why += f" (waiting: {row[0]})"
    _unreachable(tx, pair, at, why)


def _unreachable(tx: Tx, pair: Pair, at: Server, why: str) -> None:
    messages.place_queued(tx, pair, at.name, "unreachable", last_error=why)
    tx.trace(pair.message, pair.rcpt, at.name, "unreachable", why)


def release(tx: Tx, scenario: Scenario, mailbox: str) -> None:
    """PR_IN_TRANSIT was cleared: route every pair deferred for ``mailbox`` again, now;
    the first page in this transaction, the rest from ``release_due``."""
    deferred.release(tx, mailbox, deferred.QUEUE,
                     lambda page: _route_released(tx, scenario, page))


def release_due(tx: Tx, scenario: Scenario) -> int:
    """The next page of every release of deferred mail still going on."""
    return deferred.release_due(tx, deferred.QUEUE,
                                lambda page: _route_released(tx, scenario, page))


def _route_released(tx: Tx, scenario: Scenario, page: list[Pair]) -> None:
    """Route released pairs again. A 2003 store whose MTA is stopped still waits for it
    (KB 924567): the flush goes ahead only when the flush time-out has run out."""
    for pair in page:
        if scenario.server(pair.server).version == "2003" and not services.running(
            tx.conn, pair.server, "mta"
        ):
            flush_at = tx.now + scenario.defaults.mta_flush_timeout_seconds
            tx.conn.execute(
                "UPDATE pairs SET next_attempt=?, last_error=? WHERE id=?",
                (flush_at, "in-transit flush waiting for the stopped MTA (KB 924567)", pair.id),
            )
            tx.trace(pair.message, pair.rcpt, pair.server, "flush-wait",
                     "MTA stopped: released when the flush time-out runs out")
            continue
        tx.trace(pair.message, pair.rcpt, pair.server, "released", f"from {deferred.QUEUE}")
        tx.note("released", server=pair.server, queue=deferred.QUEUE)
        route(tx, scenario, pair, scenario.server(pair.server))


def retry_due(tx: Tx, scenario: Scenario) -> int:
    """Try again every deferred pair whose retry has fallen due."""
    due = deferred.due(tx.conn, [s.name for s in scenario.servers], tx.now)
    for pair in due:
        route(tx, scenario, pair, scenario.server(pair.server))
    return len(due)


def reroute_external(tx: Tx, scenario: Scenario) -> int:
    """At start: mail for other domains waiting in ``unreachable`` goes to this run's
    smarthost, and mail in queue ``smarthost`` waits in ``unreachable`` when there is none."""
    servers = [s.name for s in scenario.servers]
    # Naming the servers keeps SQLite on the queue index: no read of every pair at start.
    where = f"p.server IN ({','.join('?' * len(servers))}) AND p.queue = ? AND p.frozen = 0"
    if scenario.smarthost:
        waiting = [p for p in messages.load(tx.conn, where, (*servers, "unreachable"))
                   if not scenario.accepts_domain(p.rcpt.rpartition("@")[2])]
    else:
        waiting = messages.load(tx.conn, where, (*servers, SMARTHOST))
    for pair in waiting:
        route(tx, scenario, pair, scenario.server(pair.server))
    return len(waiting)
