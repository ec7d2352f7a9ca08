"""qshape: the Postfix age table of what the queues hold, checked against the queues."""

from __future__ import annotations

from mailflow.queue_views import LABELS, bucket, render_qshape, shape
from mailflow.runtime.lab import Lab
from tests.helpers import api, hold_move, send

ALICE, BOB, CAROL = (f"{n}@contoso.test" for n in ("alice", "bob", "carol"))


async def test_qshape_matches_the_queue_contents(lab: Lab) -> None:
    """Acceptance 6."""
    await hold_move(lab, ALICE, "EX2003-B")
    await hold_move(lab, CAROL, "EX2003-A")
    for n in range(3):
        await send(lab, "EX2003-A", ALICE, subject=f"old {n}")
    await lab.advance(7 * 60)
    await send(lab, "EX2003-A", ALICE, subject="new", sender="x@example.org")
    await send(lab, "EX2003-B", CAROL, subject="carol")
    await lab.settle()

    status, doc = await api(lab, "GET", "/api/v1/qshape?by=recipient")
    assert status == 200 and doc["columns"] == list(LABELS)
    rows = {r["destination"]: r for r in doc["rows"]}
    assert doc["rows"][0]["destination"] == "TOTAL"
    assert rows[ALICE]["total"] == 4 and rows[ALICE]["buckets"][:2] == [1, 3]  # <5, 5-10 min
    assert rows[CAROL]["total"] == 1 and rows[CAROL]["buckets"][0] == 1
    # The same recipients the queue listing counts, queue by queue.
    _, queues = await api(lab, "GET", "/api/v1/queues")
    assert rows["TOTAL"]["total"] == sum(q["message_count"] for q in queues) == 5
    for queue in queues:
        if queue["message_count"]:
            _, one = await api(lab, "GET", f"/api/v1/qshape?server={queue['server']}"
                                           f"&queue={queue['queue']}")
            assert one["rows"][0]["total"] == queue["message_count"]
            _, listed = await api(
                lab, "GET", f"/api/v1/queues/{queue['server']}/{queue['queue']}/messages")
            assert sum(len(m["recipients"]) for m in listed) == queue["message_count"]

    _, by_domain = await api(lab, "GET", "/api/v1/qshape?server=EX2003-A")
    assert [(r["destination"], r["total"]) for r in by_domain["rows"]] == [
        ("TOTAL", 4), ("contoso.test", 4)]
    _, by_sender = await api(lab, "GET", "/api/v1/qshape?server=ex2003-a&by=sender")
    assert [(r["destination"], r["total"]) for r in by_sender["rows"]] == [
        ("TOTAL", 4), ("tester@example.net", 3), ("x@example.org", 1)]
    text = render_qshape(by_sender).splitlines()
    assert text[0].split() == list(LABELS)
    assert text[2].split()[:4] == ["tester@example.net", "3", "0", "3"]

    assert (await api(lab, "GET", "/api/v1/qshape?by=size"))[0] == 400
    assert (await api(lab, "GET", "/api/v1/qshape?server=NOPE"))[0] == 404


def test_buckets_are_postfix_qshape_columns() -> None:
    minute = 60.0
    assert [bucket(a * minute) for a in (0, 4.9, 5, 9.9, 10, 639, 640, 1279, 1280, 10**6)] == [
        0, 0, 1, 1, 2, 7, 8, 8, 9, 9]
    rows = shape([("b", 0.0), ("a", 6 * minute), ("a", 2000 * minute)])
    assert rows == [
        {"destination": "TOTAL", "total": 3, "buckets": [1, 1, 0, 0, 0, 0, 0, 0, 0, 1]},
        {"destination": "a", "total": 2, "buckets": [0, 1, 0, 0, 0, 0, 0, 0, 0, 1]},
        {"destination": "b", "total": 1, "buckets": [1, 0, 0, 0, 0, 0, 0, 0, 0, 0]},
    ]
