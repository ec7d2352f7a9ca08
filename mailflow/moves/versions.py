"""Which tool moves a mailbox between two Exchange versions, online or offline, push or pull.

In: the source and target server versions, the engine a request names (or none)
and the online/offline it asks for (or none). Out: the ``Rule`` that applies
(engine, online, direction), or ``mailflow.errors.Invalid`` with the reason an
unsupported pair or request is refused (HTTP 400, a ``lab run`` step that fails).

The table is the fact sheet's ("Exchange 2007 / 2010", move support by version
pair, after Exchange 2010 "Understanding Move Requests"; seed 001 for push and
pull). The lab's 2003 and 2007 servers stand for 2003 SP2 and 2007 SP2, the
service packs MRS needs. Push: a 2010 source moving to a legacy target; pull:
a 2010 target. An explicitly named legacy engine (``wizard2003``,
``movemailbox2007``) is the lab's override and runs offline on any pair.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mailflow.errors import Invalid
from mailflow.moves.common import Engine, pick_engine
from stores.topology import Version


class Direction(enum.StrEnum):
    PUSH = "push"
    PULL = "pull"


@dataclass(frozen=True)
class Rule:
    engine: Engine
    online: bool
    direction: Direction | None


# (source, target) → (online, direction) for the pairs MRS moves; every other pair is refused.
MRS_PAIRS: dict[tuple[Version, Version], tuple[bool, Direction]] = {
    (Version.V2010, Version.V2010): (True, Direction.PULL),
    (Version.V2007, Version.V2010): (True, Direction.PULL),
    (Version.V2003, Version.V2010): (False, Direction.PULL),
    (Version.V2010, Version.V2007): (False, Direction.PUSH),
    (Version.V2010, Version.V2003): (False, Direction.PUSH),
}


def mrs_refusal(source: Version, target: Version) -> str | None:
    """Why MRS cannot move from ``source`` to ``target``; None when it can."""
    if (source, target) in MRS_PAIRS:
        return None
    pair = f"Exchange {source} to Exchange {target}"
    if Version.V55 in (source, target):
        return f"{pair}: nothing moves to or from Exchange 5.5 through MRS"
    if Version.V2010 not in (source, target):
        return f"{pair}: MRS moves only to or from an Exchange 2010 server"
    return f"{pair}: MRS moves only from and to Exchange 2003 SP2, 2007 SP2 and 2010"


def rule(source: Version, target: Version, engine: str | None = None,
         online: bool | None = None) -> Rule:
    """The rule for a move request; ``Invalid`` with the reason when it cannot run."""
    chosen = Engine(engine) if engine is not None else pick_engine(source, target)
    if chosen is not Engine.MRS_2010:
        found = Rule(chosen, False, None)
    else:
        reason = mrs_refusal(source, target)
        if reason is not None:
            raise Invalid(reason)
        can_online, direction = MRS_PAIRS[(source, target)]
        found = Rule(chosen, can_online, direction)
    if online is True and not found.online:
        why = ("is a push (offline)" if found.direction is Direction.PUSH
               else "cannot move online")
        raise Invalid(f"Exchange {source} to Exchange {target} with {chosen} {why};"
                      " --online is refused")
    return Rule(found.engine, found.online and online is not False, found.direction)


def check_archive(has_archive: bool, target: Version) -> None:
    """Archives exist only in Exchange 2010: a mailbox with one moves only to 2010 (seed 001)."""
    if has_archive and target is not Version.V2010:
        raise Invalid(f"the mailbox has an archive mailbox, which exists only on Exchange 2010:"
                      f" it cannot move to Exchange {target}")
