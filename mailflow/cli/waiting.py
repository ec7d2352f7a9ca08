"""``move complete|fail ID --wait``: wait over the API until the released mail has landed.

In: a ``Client``, the move as the action (complete or fail) answered it, and a timeout
in real seconds. Out: a progress line each time what still waits changes, a last line
when the move is done, and the exit status: 0 when done, a ``CliError`` with status 1 on
timeout.

"Done" is precise: the move has ended (Completed, CompletedWithWarning or Failed) and no
recipient of any message addressed to its mailbox (its primary SMTP address or an SMTP
proxy) is still on its way: every such (message, recipient) pair is delivered, relayed,
returned in an NDR or deleted. A pair still in ``deferred``, ``holding``, a link queue
(``smtp:*``), an MTA queue (``mta:*``), ``local`` or ``unreachable`` keeps the wait going,
so a stuck RPC queue (docs/stuck-rpc-queue.md) ends in the timeout, naming that queue.
"""

from __future__ import annotations

import sys
import time
import urllib.parse
from collections import Counter
from typing import Any, TextIO

from mailflow.cli.client import Client, CliError

# Move statuses after which the move does nothing more (stores.moves.FINAL).
MOVE_ENDED = frozenset({"Completed", "CompletedWithWarning", "Failed"})
# Pair states of a recipient that has reached its final place (stores.messages.FINAL).
PAIR_FINAL = frozenset({"delivered", "relayed", "ndr", "deleted", "expanded"})
# How often the lab is asked again, in real seconds: the mail crosses real SMTP hops.
POLL_SECONDS = 0.2
PAGE = 10_000


def addresses(client: Client, mailbox: str) -> set[str]:
    """The SMTP addresses mail for ``mailbox`` may carry (lower case)."""
    doc = client.call("GET", f"/api/v1/mailboxes/{urllib.parse.quote(mailbox, safe='@')}")
    found = {mailbox.lower()}
    found |= {p.split(":", 1)[1].lower() for p in doc.get("proxy_addresses", [])
              if p.lower().startswith("smtp:")}
    return found


def still_waiting(client: Client, wanted: set[str]) -> Counter[str]:
    """Recipients addressed to ``wanted`` not at their final place, by where they wait
    (``SERVER\\queue``)."""
    places: Counter[str] = Counter()
    for address in sorted(wanted):
        offset = 0
        while True:
            query = urllib.parse.urlencode({"recipient": address, "limit": PAGE,
                                            "offset": offset})
            rows: list[dict[str, Any]] = client.call("GET", f"/api/v1/messages?{query}")
            for row in rows:
                for pair in row["recipients"]:
                    if pair["rcpt"].lower() == address and pair["state"] not in PAIR_FINAL:
                        places[f"{pair['server']}\\{pair['queue'] or pair['state']}"] += 1
            if len(rows) < PAGE:
                break
            offset += PAGE
    return places


def wait_for_move(client: Client, move: dict[str, Any], timeout: float,
                  out: TextIO = sys.stdout) -> int:
    """Poll the lab until ``move`` (its document) is done (see the module docstring),
    printing a line to ``out`` whenever what it waits for changes; 0 when done,
    CliError(status 1) on timeout."""
    deadline = time.monotonic() + timeout
    move_id = move["id"]
    path = f"/api/v1/moves/{urllib.parse.quote(move_id)}"
    wanted = addresses(client, move["mailbox"])
    last = ""
    while True:
        places = still_waiting(client, wanted)
        ended = move["status"] in MOVE_ENDED
        if ended and not places:
            print(f"move {move_id} {move['status']}: all mail for {move['mailbox']}"
                  " has reached its final place", file=out, flush=True)
            return 0
        where = ", ".join(f"{place} {n}" for place, n in sorted(places.items())) or "none"
        line = (f"waiting: move {move_id} {move['status']} / {move['status_detail']};"
                f" recipients still queued: {where}")
        if line != last:
            print(line, file=out, flush=True)
            last = line
        if time.monotonic() >= deadline:
            raise CliError(f"timed out after {timeout:g}s waiting for move {move_id}"
                           f" ({move['status']}); still queued: {where}", status=1)
        time.sleep(POLL_SECONDS)  # the released mail crosses real SMTP hops; ask again
        move = client.call("GET", path)
