"""The lab's committed changes: a waiter wakes on the next commit, not on a timer."""

from __future__ import annotations

import asyncio

from mailflow.runtime.changes import Changes
from mailflow.runtime.lab import Lab
from stores import meta


async def test_a_waiter_wakes_on_the_bump_and_sees_the_new_generation() -> None:
    changes = Changes()
    waiter = asyncio.ensure_future(changes.wait(after=0, timeout=60))
    await asyncio.sleep(0)
    assert not waiter.done()
    changes.bump()
    assert await waiter == 1


async def test_a_generation_already_past_returns_at_once_and_a_timeout_returns_the_same() -> None:
    changes = Changes()
    changes.bump()
    assert await changes.wait(after=0, timeout=60) == 1
    assert await changes.wait(after=1, timeout=0) == 1


async def test_every_commit_of_the_lab_bumps_its_changes_even_without_facts(lab: Lab) -> None:
    before = lab.changes.generation
    waiter = asyncio.ensure_future(lab.changes.wait(after=before, timeout=60))
    # A write that notes no fact at all.
    await lab.store.write(lambda tx: meta.put(tx, "test-key", "value"))
    assert await waiter > before
