"""The trail an MRS move request leaves (seed 001): on the user, and in a System Mailbox.

In: a mailbox's MRS request (``stores.moves``, until ``move remove`` deletes it), or
a database name, with the scenario. Out: the msExchMailboxMove* attributes shown on
``GET /api/v1/mailboxes/{address}`` (``attributes``; they stay until Remove-MoveRequest,
and a second request is refused meanwhile, ``mailflow.moves.dispatch``), the archive
of a mailbox that has one (it lives and moves with the mailbox), and the target
database's System Mailbox with its folders "MailboxReplicationService Move Jobs"
(requests not yet final) and "... Move Reports" (final ones), one message per request
(``system_mailbox``). The request messages are derived from the moves table, so they
appear with New-MoveRequest and go with Remove-MoveRequest, as in seed 001.
"""

from __future__ import annotations

from typing import Any

from mailflow.errors import NotFound
from mailflow.moves import mrs2010
from mailflow.moves.states import FINAL, MoveStatus
from stores import databases
from stores import moves as stored
from stores.backend import Read
from stores.moves import MoveRecord
from stores.topology import Scenario, mailbox_database

JOBS = "MailboxReplicationService Move Jobs"
REPORTS = "MailboxReplicationService Move Reports"
SYNC_STATES = "MailboxReplicationService SyncStates"
# msExchMailboxMoveFlags as the lab sets them (the real bit values are not public here:
# a readable word per flag, unconfirmed).
_STATUS_WORDS = {MoveStatus.QUEUED: "Queued", MoveStatus.IN_PROGRESS: "InProgress",
                 MoveStatus.AUTO_SUSPENDED: "AutoSuspended", MoveStatus.SUSPENDED: "Suspended",
                 MoveStatus.COMPLETION_IN_PROGRESS: "CompletionInProgress",
                 MoveStatus.COMPLETED: "Completed",
                 MoveStatus.COMPLETED_WITH_WARNING: "CompletedWithWarning",
                 MoveStatus.FAILED: "Failed"}


def _dn(database: str) -> str:
    return f"CN={database},CN=Databases,CN=Exchange Administrative Group"


def attributes(move: MoveRecord) -> dict[str, Any]:
    """msExchMailboxMove* of a user with an MRS request (seed 001, step 4)."""
    options = move.options
    flags = ["IntraOrg", "Online" if options.get("online") else "Offline"]
    if options.get("direction"):
        flags.append(str(options["direction"]).capitalize())
    return {
        "msExchMailboxMoveStatus": _STATUS_WORDS[move.status],
        "msExchMailboxMoveFlags": ", ".join(flags),
        "msExchMailboxMoveSourceMDBLink": _dn(mailbox_database(move.source)),
        "msExchMailboxMoveTargetMDBLink": _dn(mailbox_database(move.target)),
        "msExchMailboxMoveBatchName": move.batch,
        "msExchMailboxMoveRemoteHostName": None,  # a local move; cross-forest is out of scope
    }


def mailbox_extras(db: Read, scenario: Scenario, doc: dict[str, Any]) -> dict[str, Any]:
    """What a mailbox's view adds: its request's attributes and its archive."""
    move = stored.open_request(db, doc["address"], mrs2010.ENGINE)
    archive = doc["address"].lower() in scenario.archived
    return {**doc, "move_request": move.id if move else None,
            **(attributes(move) if move else {}),
            "archive_database": mailbox_database(doc["server"]) if archive else None}


def system_mailbox(db: Read, scenario: Scenario, database: str) -> dict[str, Any]:
    """The System Mailbox of ``database``: a message per MRS request that targets it."""
    dag = databases.get(db, database)  # issue 19: a DAG database, on its active copy's server
    server = (scenario.server(dag.active.server) if dag is not None else
              next((s for s in scenario.servers
                    if mailbox_database(s.name).upper() == database.upper()), None))
    if server is None or not server.version.hub_transport:
        raise NotFound(f"no Exchange 2007/2010 mailbox database {database!r}")
    folders: dict[str, list[dict[str, Any]]] = {JOBS: [], REPORTS: [], SYNC_STATES: []}
    for move in stored.requests_to(db, server.name, mrs2010.ENGINE):
        folder = REPORTS if move.status in FINAL else JOBS
        folders[folder].append({
            "subject": move.mailbox, "move": move.id, "status": move.status.value,
            "status_detail": move.status_detail, "created_at": move.created_at,
            "mrs_server": move.options.get("mrs_server"),
        })
    name = dag.name if dag is not None else mailbox_database(server.name)
    return {"database": name, "server": server.name, "system_mailbox": f"SystemMailbox{{{name}}}",
            "folders": [{"name": name, "messages": rows} for name, rows in folders.items()]}
