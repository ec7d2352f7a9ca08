"""Get-MoveRequestStatistics of a move: its timestamps, durations, failure and report.

In: a ``stores.moves.MoveRecord`` (its history of status changes with their lab times),
the lab's clock and, for a Queued request, its place in the queue. Out: the fields
of Exchange 2010's Get-MoveRequestStatistics (fact sheet, "Exchange 2007 / 2010"),
pure functions of the history, so they never drift from what the move did.
``TotalStalledDueToHADuration`` sums the time spent in StalledDueToHA and
DataReplicationWait: 0 until a data-guarantee gate (issue 19) stalls a request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from stores.moves import MoveRecord, MoveStatus

IN_PROGRESS = frozenset({MoveStatus.IN_PROGRESS.value, MoveStatus.COMPLETION_IN_PROGRESS.value})
SUSPENDED = frozenset({MoveStatus.SUSPENDED.value, MoveStatus.AUTO_SUSPENDED.value})
STALLED_HA = frozenset({"StalledDueToHA", "DataReplicationWait"})


def spans(history: Iterable[Mapping[str, Any]], end: float) -> list[tuple[str, str, float]]:
    """(status, status_detail, seconds) of each entry of the history, up to ``end``."""
    entries = list(history)
    ends = [e["time"] for e in entries[1:]] + [end]
    return [(e["status"], e["status_detail"], max(0.0, stop - e["time"]))
            for e, stop in zip(entries, ends, strict=True)]


def total(history: Iterable[Mapping[str, Any]], end: float, *,
          statuses: frozenset[str] = frozenset(), details: frozenset[str] = frozenset()
          ) -> float:
    return sum(s for status, detail, s in spans(history, end)
               if status in statuses or detail in details)


def first_time(history: Iterable[Mapping[str, Any]], detail: str) -> float | None:
    return next((e["time"] for e in history if e["status_detail"] == detail), None)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def report(move: MoveRecord) -> list[str]:
    """The move's log lines (Get-MoveRequestStatistics -IncludeReport), one per change."""
    lines = [f"{_iso(e['time'])} [{move.options.get('mrs_server') or move.target}]"
             f" {e['status']}: {e['status_detail']}" for e in move.history]
    reason = move.progress.get("failure_reason") or move.progress.get("stall_reason")
    if reason:
        lines.append(f"{_iso(move.finished_at or move.history[-1]['time'])} {reason}")
    return lines


def statistics(move: MoveRecord, now: float, position: tuple[int, int]) -> dict[str, Any]:
    end = move.finished_at if move.finished_at is not None else now
    history, done = move.history, move.progress
    in_progress = total(history, end, statuses=IN_PROGRESS)
    failed = move.status is MoveStatus.FAILED
    completed = move.status in (MoveStatus.COMPLETED, MoveStatus.COMPLETED_WITH_WARNING)
    return {
        "queued_timestamp": move.created_at,
        "start_timestamp": move.begun_at,
        "initial_seeding_completed_timestamp": first_time(history, "IncrementalSync"),
        "final_sync_timestamp": first_time(history, "Finalization"),
        "completion_timestamp": move.finished_at if completed else None,
        "overall_duration": end - move.created_at,
        "total_in_progress_duration": in_progress,
        "total_suspended_duration": total(history, end, statuses=SUSPENDED),
        "total_stalled_due_to_ha_duration": total(history, end, details=STALLED_HA),
        "failure_type": done.get("failure_type", move.status_detail) if failed else None,
        "failure_side": done.get("failure_side") if failed else None,
        "failure_timestamp": move.finished_at if failed else None,
        "position_in_queue": (f"{position[0]} out of {position[1]}"
                              if move.status is MoveStatus.QUEUED and position[0] else None),
        "mrs_server_name": move.options.get("mrs_server"),
        "bytes_transferred_per_minute": (done.get("bytes_transferred", 0) * 60 / in_progress
                                         if in_progress else 0.0),
        "report": report(move),
    }
