"""The Active Directory Connector and 5.5 directory replication, on the lab clock (issue 17).

In: the lab clock (``run_due``, ``next_due`` through the scheduler), an
operator's ``run``/``stop``/``start``, and the directory side of a completed
move (``moved``). Out: the 5.5 directories and AD brought into step:
- an agreement's run (seeds 003, 004): AD objects homed in its site written
  into that site's 5.5 directory (to-55); changes made on the 5.5 side written
  to AD (to-ad), which resets homeMDB after a conflicting change during an
  intra-site move (KB 299473: the split mailbox);
- the clean-up (every ``adc_cleanup_seconds``, and at once when the service
  starts; seed 004): bumped UDGs re-replicated, 5.5 DL members rewritten from
  each stub's DN to the new one, DLs removed from its memberOf, the stub deleted
  when none remains (ADCDoNotReplicate set, so no CA deletes the AD object);
- 5.5 directory replication between sites (``ds_replication_seconds``), which
  runs whether or not the ADC does.
Events (source ``mailflow``): 1100 agreement run, 1101 stub created, 1102 stub
deleted, 1103 homeMDB reset.
"""

from __future__ import annotations

from stores import adc as stored
from stores import directory, replicas
from stores.adc import NEXT_CLEANUP, NEXT_REPLICATION
from stores.backend import Conn, Tx
from stores.replicas import NM_MOVED_CROSS_SITE
from stores.topology import Scenario

EVENT_RUN, EVENT_STUB, EVENT_STUB_DELETED, EVENT_RESET = 1100, 1101, 1102, 1103
DO_NOT_REPLICATE = "ADCDoNotReplicate"


def _event(tx: Tx, event_id: int, level: str, text: str) -> None:
    tx.event("mailflow", event_id, level, "ADC", text, category="ADC")


def _servers(scenario: Scenario, site: str) -> list[str]:
    return [s.name for s in scenario.servers if s.site == site]


def seed(tx: Tx, scenario: Scenario) -> None:
    """The 5.5 directories, groups and agreements of a new (or older) data directory."""
    replicas.seed(tx, scenario)
    stored.seed(tx, scenario, tx.now)


def run_due(tx: Tx, scenario: Scenario) -> int:
    """Every agreement, clean-up and replication whose time has come; how many ran."""
    if not scenario.mixed:
        return 0
    done = 0
    for name in stored.due(tx, tx.now):
        run_agreement(tx, scenario, name)
        done += 1
    cleanup_at = stored.when(tx, NEXT_CLEANUP)
    if cleanup_at is not None and cleanup_at <= tx.now and stored.running(tx):
        cleanup(tx, scenario)
        done += 1
    replication_at = stored.when(tx, NEXT_REPLICATION)
    if replication_at is not None and replication_at <= tx.now:
        replicate(tx, scenario)
        done += 1
    return done


def next_due(conn: Conn, scenario: Scenario, after: float) -> float | None:
    return stored.next_due(conn, after) if scenario.mixed else None


def run_agreement(tx: Tx, scenario: Scenario, name: str) -> None:
    """One run of agreement ``name`` (whatever its schedule: "replicate now" too)."""
    agreement = next((a for a in stored.agreements(tx) if a.name == name), None)
    if agreement is None:
        raise KeyError(name)
    created = updated = 0
    if agreement.direction in ("to-55", "both"):
        for address, server, dn, proxies in stored.missing_in_55(
                tx, agreement.site, _servers(scenario, agreement.site)):
            stored.put_object(tx, agreement.site, address, server, dn, proxies)
            created += 1
    if agreement.direction in ("to-ad", "both"):
        for dn, mailbox, server, attributes in stored.edited(tx, agreement.site):
            _to_ad(tx, scenario, mailbox, server, attributes)
            stored.resolve_edit(tx, agreement.site, dn, server)
            updated += 1
    stored.ran(tx, name, tx.now, agreement.schedule, stored.running(tx))
    _event(tx, EVENT_RUN, "Information", f"Connection agreement {name} (site"
           f" {agreement.site}, {agreement.direction}) ran: {created} written to the 5.5"
           f" directory, {updated} written to Active Directory.")


def _to_ad(tx: Tx, scenario: Scenario, mailbox: str, server: str | None,
           attributes: dict[str, str]) -> None:
    """A change made on the 5.5 side wins in AD, with the homeMDB of the version it was
    made on: after an intra-site move meanwhile, the source server (KB 299473)."""
    home = directory.lookup(tx, mailbox)
    directory.set_attributes(tx, mailbox, attributes)
    if home is None or server is None or home.server == server:
        return
    directory.rehome(tx, scenario, mailbox, scenario.server(server))
    _event(tx, EVENT_RESET, "Warning", f"homeMDB of {mailbox} reset from {home.server} to"
           f" {server} by a conflicting change on the 5.5 side (KB 299473): new mail goes"
           f" to {server}, the mailbox data stays on {home.server}.")


def cleanup(tx: Tx, scenario: Scenario) -> None:
    """DL and stub clean-up (seed 004), then the next one an interval on."""
    bumped = stored.replicate_udgs(tx)
    if bumped:
        _event(tx, EVENT_RUN, "Information", "Universal distribution groups re-replicated to"
               f" the 5.5 directory: {', '.join(bumped)}.")
    for site, dn, mailbox, member_of in replicas.stubs(tx):
        new = directory.legacy_exchange_dn(tx, mailbox)
        for dl in list(member_of):
            replicas.rewrite_members(tx, dl, dn, new)
            member_of.remove(dl)
        replicas.set_member_of(tx, site, dn, member_of)
        replicas.delete(tx, site, dn)
        directory.set_attributes(tx, mailbox, {DO_NOT_REPLICATE: "TRUE"})
        _event(tx, EVENT_STUB_DELETED, "Information", f"Stub {dn} of {mailbox} deleted from"
               f" the 5.5 directory of site {site}; DL members now {new}.")
    stored.set_when(tx, NEXT_CLEANUP, tx.now + scenario.defaults.adc_cleanup_seconds)


def replicate(tx: Tx, scenario: Scenario) -> None:
    """5.5 directory replication between the sites, then the next one an interval on."""
    stored.replicate_sites(tx, scenario.sites)
    stored.set_when(tx, NEXT_REPLICATION, tx.now + scenario.defaults.ds_replication_seconds)


def run(tx: Tx, scenario: Scenario, name: str | None = None) -> list[str]:
    """``adc run [AGREEMENT]``: one agreement, or every one, now; the names run."""
    names = [name] if name is not None else [a.name for a in stored.agreements(tx)]
    for each in names:
        run_agreement(tx, scenario, each)
    return names


def stop(tx: Tx) -> None:
    stored.set_running(tx, False)
    stored.reschedule(tx, tx.now, running=False)
    _event(tx, EVENT_RUN, "Information", "The ADC service stopped.")


def start(tx: Tx, scenario: Scenario) -> None:
    """Starting the service runs every scheduled agreement and the clean-up at once (seed 004)."""
    stored.set_running(tx, True)
    _event(tx, EVENT_RUN, "Information", "The ADC service started.")
    for agreement in stored.agreements(tx):
        if agreement.schedule is not None:
            run_agreement(tx, scenario, agreement.name)
    cleanup(tx, scenario)


def moved(tx: Tx, scenario: Scenario, mailbox: str, source: str, target: str) -> None:
    """The directory side of a completed move, after AD was updated (seeds 000, 004)."""
    if not scenario.mixed:
        return
    source_site, target_site = scenario.server(source).site, scenario.server(target).site
    if source_site == target_site:
        replicas.set_home(tx, target_site, directory.legacy_exchange_dn(tx, mailbox), target)
        return
    old = directory.x500_proxies(tx, mailbox)[-1]
    directory.set_attributes(tx, mailbox, {"msExchADCGlobalNames": f"EX5:{NM_MOVED_CROSS_SITE}"})
    if replicas.make_stub(tx, source_site, old):
        _event(tx, EVENT_STUB, "Information", f"{old} of {mailbox} is a stub in the 5.5"
               f" directory of site {source_site}; the 5.5 directory of {target_site} has no"
               " object for it until its connection agreement runs (KB 841659).")
    bumped = stored.bump_udgs(tx, mailbox)
    if bumped:
        _event(tx, EVENT_RUN, "Information", f"replicatedObjectVersion incremented on"
               f" {', '.join(bumped)} (member {mailbox} moved across sites).")
