"""The organization a lab emulates: sites, servers, connectors, mailboxes and behaviour defaults.

In: nothing (plain data, built by ``mailflow.scenarios`` from a TOML scenario).
Out: read by every layer. Connectors and RPC reachability are only the
starting state; at run time they live in the store and can change.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass, field

from stores.faults import FaultRule


class Version(enum.StrEnum):
    """An Exchange version, and what that version's servers do."""

    V55 = "5.5"
    V2000 = "2000"
    V2003 = "2003"
    V2007 = "2007"
    V2010 = "2010"

    @property
    def legacy_mta(self) -> bool:
        """5.5 and 2000 park refused mail in a holding folder and hand it to the MTA."""
        return self in (Version.V55, Version.V2000)

    @property
    def smtp_transport(self) -> bool:
        """Every version but 5.5 routes between servers over SMTP (5.5 has only the MTA)."""
        return self is not Version.V55

    @property
    def hub_transport(self) -> bool:
        """2007 and 2010: the transport of Get-Queue (delay notice 4 h) instead of IIS SMTP."""
        return self in (Version.V2007, Version.V2010)

    @property
    def online_moves(self) -> bool:
        """2010's MRS keeps a mailbox usable while it is copied."""
        return self is Version.V2010


VERSIONS = tuple(Version)
CONNECTOR_TYPES = ("site", "x400", "smtp")
# How Exchange System Manager names each type, in a connector's default name and its events.
CONNECTOR_LABELS = {"site": "Site", "x400": "X.400", "smtp": "SMTP"}


# What a server's endpoint takes for AUTH: nothing (not offered), any user and password,
# or the scenario's [[logins]] only (docs/tls-and-auth.md).
AUTH_MODES = ("off", "any", "logins")
# How the transport speaks to the smarthost: no STARTTLS, STARTTLS required without
# checking the certificate, or STARTTLS required with a certificate the system trusts.
SMARTHOST_TLS = ("off", "starttls", "verify")


@dataclass(frozen=True)
class SmtpSecurity:
    """STARTTLS and AUTH of one server's public port (docs/tls-and-auth.md)."""

    # Only NOOP, EHLO, STARTTLS and QUIT before STARTTLS (530 5.7.0 otherwise).
    require_tls: bool = False
    auth: str = "off"
    # AUTH over plain text (RFC 4954 §4 advises against it): 538 5.7.11 unless set.
    auth_before_tls: bool = False
    # MAIL, RCPT and DATA only after a successful AUTH (530 5.7.0 otherwise).
    auth_required: bool = False
    # PEM files of a certificate and its key; empty: the lab's own, made on first run.
    tls_cert: str = ""
    tls_key: str = ""
# Exchange 2007/2010 server roles a scenario may give (``roles``): Mailbox, Hub Transport,
# Client Access. Each 2010 Client Access server runs an MRS instance (seed 001).
ROLES = ("mailbox", "hub", "cas")


@dataclass(frozen=True)
class Server:
    name: str
    version: Version
    site: str
    smtp_port: int
    # Empty: every role of its version (a 2010 server is then also Client Access).
    roles: tuple[str, ...] = ()
    security: SmtpSecurity = field(default_factory=SmtpSecurity)
    # The address the lab's other processes hop to this server at, when it runs in a
    # process of its own on another host (docs/scale-out.md); "" for the address it listens on.
    host: str = ""

    @property
    def runs_mrs(self) -> bool:
        """A 2010 Client Access server: it runs the Mailbox Replication Service (seed 001)."""
        return self.version is Version.V2010 and (not self.roles or "cas" in self.roles)


def mailbox_database(server: str) -> str:
    """The mailbox database of a server (one per server until databases are modelled, issue
    19): the NextHopDomain of its 2007/2010 delivery queue, ``<SERVER>-DB01``."""
    return f"{server}-DB01"


@dataclass(frozen=True)
class ConnectorSpec:
    type: str
    site_a: str
    site_b: str
    cost: int = 1
    name: str = ""


@dataclass(frozen=True)
class MailboxSpec:
    address: str
    server: str
    display_name: str
    # Items already in the mailbox when the lab starts; they give moves something to copy.
    items: int = 0
    # A 2010 personal archive: it moves with the mailbox and only to a 2010 target (seed 001).
    archive: bool = False
    # The DAG database it lives in (``[[databases]]``, issue 19); "" for the server's own.
    database: str = ""


@dataclass(frozen=True)
class Defaults:
    """Behaviour defaults; every one can be set in a scenario's ``[defaults]`` table."""

    # KB 838644: deferred delivery is retried about every 30 minutes.
    deferred_retry_seconds: float = 1800.0
    # Retry interval of an SMTP link queue whose peer does not answer.
    link_retry_seconds: float = 600.0
    # Exchange 2003 default message size limit is 10 MB.
    max_message_size: int = 10 * 1024 * 1024
    # RFC 5321 §4.5.3.1.8 asks servers to accept at least 100 recipients.
    max_recipients: int = 100
    # A move without --hold completes after base + size / rate simulated seconds.
    move_base_seconds: float = 60.0
    move_bytes_per_second: float = 1024.0 * 1024.0
    # Size of each pre-existing mailbox item.
    item_size: int = 4096
    # 5.5/2000 MTA (exchange-facts.md, "MTA defaults"): open interval and max open retries,
    # and the message timeouts by priority.
    mta_open_interval_seconds: float = 600.0
    mta_max_open_retries: int = 144
    mta_timeout_urgent_seconds: float = 2 * 86400.0
    mta_timeout_normal_seconds: float = 7 * 86400.0
    mta_timeout_nonurgent_seconds: float = 10 * 86400.0
    # KB 924567: a 2003 store flushing its in-transit mail waits this long for a disabled MTA.
    mta_flush_timeout_seconds: float = 150 * 60.0
    # SMTP endpoints: an idle client is dropped after this many *real* seconds (not lab
    # time; RFC 5321 §4.5.3.2.7 asks for at least 5 minutes), and each endpoint serves at
    # most this many sessions at once (the next connection gets 421 4.3.2).
    smtp_idle_timeout_seconds: float = 300.0
    smtp_max_connections: int = 200
    # Address probing (RCPT after RCPT answered 550 5.1.1 "User unknown"): after this many
    # in one session each further one is answered this many *real* seconds late, and the
    # session is closed with 421 4.7.0 at the maximum (as Postfix's smtpd_soft_error_limit,
    # smtpd_error_sleep_time and smtpd_hard_error_limit). The lab's own hop is exempt.
    smtp_unknown_recipients_before_delay: int = 10
    smtp_unknown_recipient_delay_seconds: float = 1.0
    smtp_max_unknown_recipients: int = 20
    # Move Mailbox wizard (seed 000, KB 821829): bad-item limit and threads per batch.
    wizard_bad_item_limit: int = 3
    wizard_threads: int = 4
    # Exchange 2010 MRS (exchange-facts.md): BadItemLimit default 0, retries, concurrency.
    mrs_bad_item_limit: int = 0
    mrs_max_retries: int = 60
    mrs_retry_delay_seconds: float = 30.0
    mrs_max_active_moves_per_source_mdb: int = 5
    mrs_max_active_moves_per_target_mdb: int = 2
    # Delay notifications and expiry of queued mail (exchange-facts.md, "Exchange 2003 SMTP
    # queues" and "Exchange 2007 / 2010"); counted from the message's arrival in the lab.
    # 2000/2003 SMTP virtual server: delay notification 12 h, expiration timeout 2 days.
    delay_notification_seconds: float = 12 * 3600.0
    expiration_seconds: float = 2 * 86400.0
    # 2007/2010 transport: DelayNotificationTimeOut 4 h, MessageExpirationTimeOut 2 days.
    delay_notification_2007_seconds: float = 4 * 3600.0
    expiration_2007_seconds: float = 2 * 86400.0
    # 2007/2010 transport (exchange-facts.md, "Exchange 2007 / 2010", Transport): a mailbox
    # delivery queue refused by the store is retried TransientFailureRetryCount (6) times every
    # TransientFailureRetryInterval (5 min), then every MessageRetryInterval (15 min).
    transient_failure_retry_count: int = 6
    transient_failure_retry_interval_seconds: float = 300.0
    message_retry_interval_seconds: float = 900.0
    # Exchange 2010 MRS limits (exchange-facts.md, "MRS config defaults (2010)") beside the
    # per-database ones above: per source and target server and per MRS instance.
    mrs_max_active_moves_per_source_server: int = 50
    mrs_max_active_moves_per_target_server: int = 5
    mrs_max_total_moves_per_mrs: int = 100
    # Issue 19, DAG data guarantee (exchange-facts.md, "Exchange 2007 / 2010", DAG bullet):
    # EnableDataGuaranteeCheck (1 = True, the default); DataGuaranteeCheckPeriod 5 min as
    # seed 001 says (the fact sheet's 10 s is from a later config and unconfirmed; seed 001
    # bounds it to 30 s .. 2 h); DataGuaranteeTimeout 30 min.
    enable_data_guarantee_check: int = 1
    data_guarantee_check_period_seconds: float = 300.0
    data_guarantee_timeout_seconds: float = 1800.0
    # Mixed mode (exchange-facts.md, "Mixed-mode directory"; issue 17): the ADC's DL and stub
    # clean-up runs every 12 hours (seed 004); 5.5 directory replication between sites runs
    # on its own schedule (unconfirmed: no seed gives its default).
    adc_cleanup_seconds: float = 12 * 3600.0
    ds_replication_seconds: float = 3600.0


_DAY = 86400.0
# The range (lowest, highest), inclusive, of every ``Defaults`` key a scenario may set
# (docs/scenarios.md gives the reasons). Retry intervals start at Exchange's own minimum of
# one minute, so that a retry cannot run every tick; durations stop at 90 days and sizes at
# 100 MiB, so that every derived time stays a date and every message fits in memory.
DEFAULT_RANGES: dict[str, tuple[float, float]] = {
    "deferred_retry_seconds": (60, _DAY),
    "link_retry_seconds": (60, _DAY),
    "max_message_size": (1024, 100 * 1024 * 1024),
    "max_recipients": (1, 10_000),
    "move_base_seconds": (1, _DAY),
    "move_bytes_per_second": (1024, 10 * 1024**3),
    "item_size": (1, 1024 * 1024),
    "mta_open_interval_seconds": (60, _DAY),
    "mta_max_open_retries": (1, 10_000),
    "mta_timeout_urgent_seconds": (60, 90 * _DAY),
    "mta_timeout_normal_seconds": (60, 90 * _DAY),
    "mta_timeout_nonurgent_seconds": (60, 90 * _DAY),
    "mta_flush_timeout_seconds": (60, 90 * _DAY),
    "smtp_idle_timeout_seconds": (1, 3600),
    "smtp_max_connections": (1, 1000),
    "smtp_unknown_recipients_before_delay": (0, 10_000),
    "smtp_unknown_recipient_delay_seconds": (0, 60),
    "smtp_max_unknown_recipients": (0, 100_000),
    "wizard_bad_item_limit": (0, 100_000),
    "wizard_threads": (1, 64),
    "mrs_bad_item_limit": (0, 100_000),
    "mrs_max_retries": (0, 1000),
    "mrs_retry_delay_seconds": (1, _DAY),
    "mrs_max_active_moves_per_source_mdb": (1, 100),
    "mrs_max_active_moves_per_target_mdb": (1, 100),
    "delay_notification_seconds": (60, 90 * _DAY),
    "expiration_seconds": (60, 90 * _DAY),
    "delay_notification_2007_seconds": (60, 90 * _DAY),
    "expiration_2007_seconds": (60, 90 * _DAY),
    "transient_failure_retry_count": (0, 15),
    "transient_failure_retry_interval_seconds": (60, _DAY),
    "message_retry_interval_seconds": (60, _DAY),
    "mrs_max_active_moves_per_source_server": (1, 1000),
    "mrs_max_active_moves_per_target_server": (1, 1000),
    "mrs_max_total_moves_per_mrs": (1, 10_000),
    "enable_data_guarantee_check": (0, 1),
    "data_guarantee_check_period_seconds": (30, 7200),
    "data_guarantee_timeout_seconds": (60, _DAY),
    "adc_cleanup_seconds": (60, 90 * _DAY),
    "ds_replication_seconds": (60, 90 * _DAY),
}


# DataMoveReplicationConstraint values (fact sheet, "Exchange 2007 / 2010"), issue 19.
CONSTRAINTS = ("None", "SecondCopy", "SecondDatacenter", "AllDatacenters", "AllCopies")


@dataclass(frozen=True)
class CopySpec:
    """One copy of a DAG database: its server, activation preference (1 = active at start)
    and the AD site of that server."""

    server: str
    preference: int
    site: str


@dataclass(frozen=True)
class DatabaseSpec:
    """A mailbox database of a database availability group (``[[databases]]``, issue 19):
    its copies in activation-preference order and its DataMoveReplicationConstraint."""

    name: str
    dag: str
    copies: tuple[CopySpec, ...]
    constraint: str

    @property
    def active_server(self) -> str:
        return self.copies[0].server


# Directions of an ADC connection agreement: AD to the site's 5.5 directory, back, or both.
ADC_DIRECTIONS = ("to-55", "to-ad", "both")


@dataclass(frozen=True)
class AgreementSpec:
    """A recipient connection agreement of the ADC for one site (issue 17); ``schedule``
    in simulated seconds, None for "never"."""

    name: str
    site: str
    direction: str = "both"
    schedule: float | None = 3600.0


@dataclass(frozen=True)
class AdcSpec:
    """The ADC of a mixed-mode organization, and how its 5.5 servers word an NDR for a
    recipient their directory does not know (KB 841659; unconfirmed wording, a default)."""

    agreements: tuple[AgreementSpec, ...] = ()
    ndr55_status: str = "5.1.1"
    ndr55_text: str = "The recipient name is not recognized"


@dataclass(frozen=True)
class GroupSpec:
    """A distribution list: a universal distribution group in AD and, in mixed mode, a 5.5
    DL owned by ``site`` (issue 17)."""

    address: str
    site: str
    members: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scenario:
    name: str
    organization: str
    domains: tuple[str, ...]
    sites: tuple[str, ...]
    servers: tuple[Server, ...]
    connectors: tuple[ConnectorSpec, ...] = ()
    # Server pairs in different sites that can reach each other over RPC
    # (same-site servers always can).
    rpc_allow: tuple[tuple[str, str], ...] = ()
    mailboxes: tuple[MailboxSpec, ...] = ()
    defaults: Defaults = field(default_factory=Defaults)
    source: str = ""
    # Client networks (CIDR, e.g. "127.0.0.0/8") allowed to relay to domains that are
    # not accepted. Empty: no client may relay, not even on loopback.
    relay_networks: tuple[str, ...] = ()
    # HOST:PORT of the outbound smarthost that takes mail for domains outside the
    # organization (and DSNs to external senders); empty: such mail waits in queue
    # ``unreachable``. Set by ``Lab(smarthost=...)`` (``mailflow run --smarthost``).
    smarthost: str = ""
    # SMARTHOST_TLS: whether the transport asks the smarthost for STARTTLS.
    smarthost_tls: str = "off"
    # (user, password) that a server with ``auth = "logins"`` accepts.
    logins: tuple[tuple[str, str], ...] = ()
    # Fault rules the lab starts with ([[faults]], mailflow.smtp.faults), stored at the
    # first start.
    faults: tuple[FaultRule, ...] = ()
    # DAG databases and their copies (issue 19).
    databases: tuple[DatabaseSpec, ...] = ()
    # Mixed mode (issue 17): the ADC (None when no server is 5.5) and distribution lists.
    adc: AdcSpec | None = None
    groups: tuple[GroupSpec, ...] = ()

    @functools.cached_property
    def mixed(self) -> bool:
        """Mixed mode: a 5.5 server beside 2000/2003, so each site keeps a 5.5 directory
        (asked for every recipient routed, so computed once)."""
        return any(s.version is Version.V55 for s in self.servers)

    @functools.cached_property
    def _by_name(self) -> dict[str, Server]:
        """Servers by upper-cased name (names are unique case-insensitively), so that a
        lookup costs the same with 200 servers as with 4 (issue 22)."""
        return {server.name.upper(): server for server in self.servers}

    @functools.cached_property
    def archived(self) -> frozenset[str]:
        """Lower-cased addresses of the mailboxes with a personal archive, so that a move
        need not read every mailbox of the scenario (issue 22)."""
        return frozenset(m.address.lower() for m in self.mailboxes if m.archive)

    def server(self, name: str) -> Server:
        try:
            return self._by_name[name.upper()]
        except KeyError:
            raise KeyError(name) from None

    def has_server(self, name: str) -> bool:
        return name.upper() in self._by_name

    def accepts_domain(self, domain: str) -> bool:
        return domain.lower() in self.domains
