"""The categorizer: accepted mail in, each recipient routed to its next place out.

In: a ``Submission`` from an SMTP endpoint (new mail, or a pair arriving over
the SMTP hop from another emulated server, whose hop token must verify:
``routing.hop``), a DSN the lab generated
(``send_dsn``, ``fail``: the same intake as new mail, ``take_in``), and pairs
handed back by deferred delivery or a move. Out: each (message, recipient)
pair resolved to its home server through the replica of the server it is at
(``routing.resolve``: AD, or a 5.5 server's site directory in mixed mode, whose
stub or missing object gets the 5.5 NDR; a group address is expanded there, through
that replica, into one pair per member: ``routing.expansion``), and then delivered by
the store driver (``routing.delivery``), parked in ``deferred`` when the store
answers ecMailboxInTransit, put in a link queue ``smtp:<SERVER>`` for the
transport, or carried across an internal MTA hop. A recipient outside the
organization goes to queue ``smarthost`` when the lab has an outbound
smarthost, else waits in ``unreachable``; a recipient of an accepted domain
that the directory no longer knows is NDR'd (5.1.1, ``routing.dsn``).
All of it happens inside the caller's transaction, so the 250 that follows the
commit covers every step taken; so does the record of what that 250 acknowledges
(``stores.audit.acknowledge``), which the audit checks against the stored pairs.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import formatdate

from routing import connectors, deferred, delivery, dsn, expansion, hop, resolve
from routing.addresses import Verdict, check_recipient, may_relay, normalize, valid_sender
from routing.hop import HOP_HEADER
from stores import audit, messages, meta, pairs, queue_ids, services
from stores.backend import Tx
from stores.messages import NewMessage, Pair, PairState
from stores.queue_ids import LOCAL, SMARTHOST, UNREACHABLE, QueueId
from stores.topology import Scenario, Server, Version

# The SMTP endpoints and the lab reach the address checks through the categorizer.
__all__ = ["HOP_HEADER", "Submission", "Verdict", "accept", "check_recipient", "fail",
           "may_relay", "normalize", "release", "release_due", "reroute_external",
           "retry_due", "route", "send_dsn", "take_in", "to_mta", "valid_sender"]


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


def _recipients(rcpts: Iterable[str]) -> tuple[str, ...]:
    """Envelope recipients as pairs name them: normalized, each once."""
    return tuple(dict.fromkeys(normalize(r, smtputf8=True) or r.lower() for r in rcpts))


def accept(tx: Tx, scenario: Scenario, sub: Submission) -> str:
    """Commit a submission and route it; returns the queue id the 250 reply names, after
    recording what that reply acknowledges. A hop header whose MAC does not verify is
    dropped, and its mail taken as new mail."""
    value, data = hop.split(sub.data)
    token = None if value is None else hop.verify(meta.hop_secret(tx), value, sub.server)
    if token is not None:
        taken = _take_hop(tx, scenario, sub, token, data)
        if taken is not None:
            message, duplicate = taken
            audit.acknowledge(tx, message, sub.server, _recipients(sub.rcpts), hop=token,
                              duplicate=duplicate)
            return message
    queue_id = secrets.token_hex(8).upper()
    raw = _received(sub, queue_id, scenario.domains[0]) + data
    tx.note("accepted", server=sub.server)
    if value is not None and token is None:
        tx.trace(queue_id, None, sub.server, "hop-refused",
                 f"{HOP_HEADER.decode()} header that does not verify removed: new mail")
    client = f"{sub.helo or 'unknown'} [{sub.peer}]"
    rcpts = take_in(tx, scenario, sub, queue_id, raw,
                    f"SMTP from <{sub.mail_from}>, client {client}")
    audit.acknowledge(tx, queue_id, sub.server, rcpts)
    return queue_id


def take_in(tx: Tx, scenario: Scenario, sub: Submission, queue_id: str, raw: bytes,
            how: str, *, dsn_of: str | None = None, summary: str | None = None
            ) -> tuple[str, ...]:
    """The intake of new mail and of DSNs alike: insert the message and one pair per
    recipient, each traced and routed; returns the recipients, as their pairs name them."""
    # Only the header section is parsed: the body can be megabytes, and nothing here needs it.
    headers = BytesHeaderParser().parsebytes(raw.partition(b"\r\n\r\n")[0])
    urgency = priority(headers)
    messages.insert(tx, NewMessage(
        queue_id, str(headers.get("Message-ID", "")).strip(), sub.mail_from,
        str(headers.get("Subject", "")), raw, sub.server, urgency, dsn_of, summary))
    at = scenario.server(sub.server)
    rcpts = _recipients(sub.rcpts)
    taken = set(rcpts)  # a list's member that is a recipient already gets no second pair
    for rcpt in rcpts:
        tx.trace(queue_id, rcpt, sub.server, "accepted", how)
        # In "local" now; its row is written once routing has placed it (messages.place_*).
        pair = Pair.accepted(queue_id, rcpt, sub.server, tx.now, len(raw), urgency)
        route(tx, scenario, pair, at, taken=taken)
    return rcpts


def _take_hop(tx: Tx, scenario: Scenario, sub: Submission, token: str, data: bytes
              ) -> tuple[str, bool] | None:
    """Receive pairs relayed from another emulated server under a verified ``token``: the
    message and whether it was a resend that changed nothing; None if no message has it."""
    message = token.split(".", 1)[0]
    hopped = pairs.by_hop_token(tx, token, queue_ids.link(sub.server))
    if not hopped:
        if not messages.exists(tx, message):
            return None
        # Already taken: the sender lost our 250 and sent again. Answer 250, change nothing.
        tx.trace(message, None, sub.server, "duplicate", "retransmission over the SMTP hop ignored")
        return message, True
    raw = _received(sub, message, scenario.domains[0]) + data
    messages.set_raw(tx, message, raw)
    tx.note("accepted", server=sub.server)
    at = scenario.server(sub.server)
    for pair in hopped:
        source = pair.server
        messages.carry(pair, sub.server, LOCAL)  # its row is written where routing puts it
        tx.trace(message, pair.rcpt, source, "relayed", f"to {sub.server} over SMTP")
        tx.trace(message, pair.rcpt, sub.server, "received", f"from {source} [{sub.peer}]")
        tx.note("rerouted", server=source, transport="smtp")
        route(tx, scenario, pair, at)
    return message, False


# -- DSNs: sent through the same intake as new mail ---------------------------------------------


def send_dsn(tx: Tx, scenario: Scenario, at: Server, message: str,
             statuses: list[dsn.RecipientStatus], label: str, why: str) -> str | None:
    """Send one DSN (``label``: "NDR 4.4.7", "delay notification") about ``message`` from
    ``at``, to its sender; None, and a trace, when none may be sent."""
    original = messages.original(tx, message)
    if not original.mail_from or original.dsn_of:
        for status in statuses:
            tx.trace(message, status.rcpt, at.name, "dsn",
                     f"no {label}: the sender is null (no DSN about a DSN)")
        return None
    report = dsn.Report(at, scenario.domains[0], original.mail_from, original.subject,
                        original.accepted_at, tx.now, dsn.original_headers(original.raw),
                        tuple(statuses))
    fqdn = f"{at.name}.{scenario.domains[0]}"
    sub = Submission(at.name, "", fqdn, "", (original.mail_from,), dsn.build(report))
    dsn_id = secrets.token_hex(8).upper()
    received = (f"Received: by {fqdn} (mailflow DSN) id {dsn_id};"
                f" {formatdate(tx.now, usegmt=True)}\r\n").encode()
    summary = f"{label} about {message}: {why}"
    take_in(tx, scenario, sub, dsn_id, received + sub.data, f"DSN from {at.name}: {summary}",
            dsn_of=message, summary=summary)
    for status in statuses:
        tx.trace(message, status.rcpt, at.name, "dsn",
                 f"{label} sent as {dsn_id} to <{original.mail_from}>")
    return dsn_id


def fail(tx: Tx, scenario: Scenario, failed: Iterable[Pair], at: Server, failure: dsn.Failure,
         *, final: PairState = PairState.NDR) -> None:
    """End pairs (queued on ``at``) in ``final`` and send their sender one NDR per message."""
    by_message: dict[str, list[dsn.RecipientStatus]] = {}
    for pair in failed:
        messages.place_final(tx, pair, final, last_error=f"{failure.status} {failure.diagnostic}")
        tx.trace(pair.message, pair.rcpt, at.name, final.value,
                 f"{failure.kind}: {failure.status} {failure.diagnostic}")
        tx.note("ndr", server=at.name, status=failure.status)
        by_message.setdefault(pair.message, []).append(dsn.RecipientStatus(
            pair.rcpt, "failed", failure.status, failure.diagnostic, failure.text, tx.now))
    for message, statuses in by_message.items():
        send_dsn(tx, scenario, at, message, statuses, f"NDR {failure.status}", failure.text)


# -- routing ------------------------------------------------------------------------------------


def _hop_token(tx: Tx, pair: Pair, server: str, queue: str) -> str:
    """One token per message per link, so the transport relays them in one transaction."""
    token = pairs.hop_token(tx, pair.message, server, queue)
    return token or f"{pair.message}.{secrets.token_hex(8)}"


def route(tx: Tx, scenario: Scenario, pair: Pair, at: Server, *,
          taken: set[str] | None = None) -> None:
    """Take ``pair``, which is on server ``at``, as far as it can go now; ``taken``: the
    message's recipients that have a pair already."""
    home = resolve.lookup(tx, scenario, pair.rcpt, at)
    if (home is None or isinstance(home, resolve.NotKnown)) and _expand(
            tx, scenario, pair, at, set() if taken is None else taken):
        return
    if isinstance(home, resolve.NotKnown):
        tx.trace(pair.message, pair.rcpt, at.name, "categorized",
                 f"site {home.replica} 5.5 directory: recipient {home.state}")
        fail(tx, scenario, [pair], at, resolve.not_recognized(scenario))
        return
    if home is None:
        domain = pair.rcpt.rpartition("@")[2]
        if scenario.accepts_domain(domain):
            # Accepted while it existed (or its mail waited), gone from the directory now.
            fail(tx, scenario, [pair], at, dsn.unknown_recipient())
        else:  # relayed from relay_networks, or a DSN to an external sender
            _external(tx, scenario, pair, at, domain)
        return
    pair.mailbox = home.address  # written with the pair's next place
    target = scenario.server(home.server)
    next_hop = connectors.next_hop(tx, at, target)
    if next_hop.via == "local":
        if not queue_ids.is_parking(pair.queue or ""):  # a retry is traced by the store's answer
            tx.trace(pair.message, pair.rcpt, at.name, "categorized",
                     f"home {target.name}: local delivery")
        home = resolve.first_delivery(tx, scenario, at, home)
        refused = delivery.deliver(tx, scenario, pair, at, home.in_transit)
        if refused is not None:
            _unreachable(tx, pair, at, refused)
    elif next_hop.via == "smtp":
        assert next_hop.queue is not None
        token = _hop_token(tx, pair, at.name, next_hop.queue)
        messages.place_queued(tx, pair, at.name, next_hop.queue, next_attempt=tx.now,
                              hop_token=token)
        tx.trace(pair.message, pair.rcpt, at.name, "categorized",
                 f"home {target.name}: {next_hop.queue}")
        tx.note("link", server=at.name, target=target.name)
    elif next_hop.mta:
        assert next_hop.queue is not None
        to_mta(tx, pair, at, next_hop.queue)
    else:
        _unreachable(tx, pair, at, f"no route from site {at.site} to site {target.site}")


def _expand(tx: Tx, scenario: Scenario, pair: Pair, at: Server, taken: set[str]) -> bool:
    """A group address: ends "expanded", and each member not ``taken`` yet becomes a pair
    of its own on ``at``, accepted, then routed or NDR'd (``routing.expansion``)."""
    group = expansion.expand(tx, scenario, pair.rcpt, at)
    if group is None:
        return False
    members = [m for m in group.members if m.address not in taken]
    taken.update(m.address for m in members)
    messages.place_final(tx, pair, PairState.EXPANDED)
    tx.trace(pair.message, pair.rcpt, at.name, "expanded", group.describe(pair.rcpt, len(members)))
    unknown = []
    for member in members:
        tx.trace(pair.message, member.address, at.name, "accepted", f"member of {member.group}")
        new = Pair.accepted(pair.message, member.address, at.name, tx.now, pair.size,
                            pair.priority)
        if member.unknown is None:
            route(tx, scenario, new, at, taken=taken)
            continue
        tx.trace(pair.message, member.address, at.name, "categorized",
                 f"site {group.replica} 5.5 directory: {member.unknown}")
        unknown.append(new)
    if unknown:
        fail(tx, scenario, unknown, at, resolve.not_recognized(scenario))
    return True


def to_mta(tx: Tx, pair: Pair, at: Server, queue: QueueId) -> None:
    """Hand a pair to ``at``'s MTA, in queue ``queue``; routing.mta transfers it when due."""
    messages.place_queued(tx, pair, at.name, queue, next_attempt=tx.now)
    tx.trace(pair.message, pair.rcpt, at.name, "categorized", f"MTA queue {queue}")
    tx.note("mta", server=at.name)


def _external(tx: Tx, scenario: Scenario, pair: Pair, at: Server, domain: str) -> None:
    """A recipient outside the organization: to the outbound smarthost, if there is one."""
    if scenario.smarthost:
        messages.place_queued(tx, pair, at.name, SMARTHOST, next_attempt=tx.now)
        tx.trace(pair.message, pair.rcpt, at.name, "categorized",
                 f"external domain {domain}: queue {SMARTHOST} ({scenario.smarthost})")
        tx.note("smarthost", server=at.name)
        return
    why = f"no connector to the external domain {domain}"
    waiting = messages.dsn_summary(tx, pair.message)
    if waiting is not None:
        why += f" (waiting: {waiting})"
    _unreachable(tx, pair, at, why)


def _unreachable(tx: Tx, pair: Pair, at: Server, why: str) -> None:
    messages.place_queued(tx, pair, at.name, UNREACHABLE, last_error=why)
    tx.trace(pair.message, pair.rcpt, at.name, "unreachable", why)


# -- mail handed back ---------------------------------------------------------------------------


def release(tx: Tx, scenario: Scenario, mailbox: str) -> None:
    """PR_IN_TRANSIT was cleared: route every pair deferred for ``mailbox`` again, now (from
    ``deferred`` and the 2007/2010 delivery queues); the first page in this transaction, the
    rest from ``release_due``."""
    for queue in deferred.parking_queues(scenario):
        deferred.release(tx, mailbox, queue, lambda page: _route_released(tx, scenario, page))


def release_due(tx: Tx, scenario: Scenario) -> int:
    """The next page of every release of deferred mail still going on."""
    return sum(deferred.release_due(tx, queue, lambda page: _route_released(tx, scenario, page))
               for queue in deferred.parking_queues(scenario))


def _route_released(tx: Tx, scenario: Scenario, page: list[Pair]) -> None:
    """Route released pairs again. A 2003 store whose MTA is stopped still waits for it
    (KB 924567): the flush goes ahead only when the flush time-out has run out."""
    for pair in page:
        if scenario.server(pair.server).version is Version.V2003 and not services.running(
            tx, pair.server, "mta"
        ):
            flush_at = tx.now + scenario.defaults.mta_flush_timeout_seconds
            pairs.wait_until(tx, pair.id, flush_at,
                             "in-transit flush waiting for the stopped MTA (KB 924567)")
            tx.trace(pair.message, pair.rcpt, pair.server, "flush-wait",
                     "MTA stopped: released when the flush time-out runs out")
            continue
        queue = pair.queue or ""
        tx.trace(pair.message, pair.rcpt, pair.server, "released", f"from {queue}")
        tx.note("released", server=pair.server, queue=queue)
        _rerouted(tx, scenario, pair)
        route(tx, scenario, pair, scenario.server(pair.server))


def _rerouted(tx: Tx, scenario: Scenario, pair: Pair) -> None:
    """2007/2010: mail the store driver gives back because its mailbox moved says so."""
    if not queue_ids.is_mapi(pair.queue or ""):
        return
    home = resolve.lookup(tx, scenario, pair.rcpt, scenario.server(pair.server))
    if home is not None and not isinstance(home, resolve.NotKnown) and home.server != pair.server:
        tx.trace(pair.message, pair.rcpt, pair.server, "rerouted",
                 f"DeferReason: {deferred.REROUTED}")


def retry_due(tx: Tx, scenario: Scenario, servers: Sequence[str] | None = None) -> int:
    """Try again every deferred pair of ``servers`` (default: all) whose retry has fallen due."""
    names = list(servers) if servers is not None else [s.name for s in scenario.servers]
    due = [p for queue in deferred.parking_queues(scenario)
           for p in pairs.due(tx, names, queue, tx.now)]
    for pair in due:
        route(tx, scenario, pair, scenario.server(pair.server))
    return len(due)


def reroute_external(tx: Tx, scenario: Scenario) -> int:
    """At start: mail for other domains waiting in ``unreachable`` goes to this run's
    smarthost, and mail in queue ``smarthost`` waits in ``unreachable`` when there is none."""
    # Naming the servers keeps SQLite on the queue index: no read of every pair at start.
    servers = [s.name for s in scenario.servers]
    if scenario.smarthost:
        waiting = [p for p in pairs.waiting(tx, servers, UNREACHABLE)
                   if not scenario.accepts_domain(p.rcpt.rpartition("@")[2])]
    else:
        waiting = pairs.waiting(tx, servers, SMARTHOST)
    for pair in waiting:
        route(tx, scenario, pair, scenario.server(pair.server))
    return len(waiting)
