"""The SMTP hop between emulated servers is idempotent: a retransmission delivers nothing twice."""

from __future__ import annotations

import aiosmtplib

from mailflow.runtime.lab import Lab
from routing import hop
from routing.categorizer import HOP_HEADER
from tests.helpers import api, mailbox, queue_depth, queue_id, send


async def test_a_retransmitted_hop_is_delivered_once(lab: Lab) -> None:
    peer = lab.endpoints["EX2003-B"]
    host, _ = lab.endpoint_address("EX2003-B")
    await peer.stop()  # the relay to EX2003-B waits in its link queue
    message = queue_id(await send(lab, "EX2003-A", "carol@contoso.test"))
    await lab.settle()
    assert await queue_depth(lab, "EX2003-A", "smtp:EX2003-B") == 1
    token, raw = lab.store.read_sync(lambda c: c.execute(
        "SELECT p.hop_token, m.raw FROM pairs p JOIN messages m ON m.id = p.message"
        " WHERE p.message = ?", (message,)).fetchone())
    await peer.start(host, 0)

    # What EX2003-A would send when the 250 of its first try was lost: the same hop twice.
    signed = hop.header(await lab.transport.hop_key(), token, "EX2003-B")
    for _ in range(2):
        async with aiosmtplib.SMTP(hostname=host, port=peer.port, start_tls=False,
                                   local_hostname="EX2003-A.contoso.test") as smtp:
            _, reply = await smtp.sendmail(
                "tester@example.net", ["carol@contoso.test"],
                signed + bytes(raw))
            assert message in reply
    await lab.advance(lab.scenario.defaults.link_retry_seconds)

    assert (await mailbox(lab, "carol@contoso.test"))["message_count"] == 1
    assert await queue_depth(lab, "EX2003-A", "smtp:EX2003-B") == 0
    _, doc = await api(lab, "GET", f"/api/v1/messages/{message}")
    stages = [t["stage"] for t in doc["trace"]]
    assert stages.count("delivered") == 1 and "duplicate" in stages
    _, report = await api(lab, "GET", "/api/v1/audit")
    assert report["clean"] and (report["accepted"], report["delivered"]) == (1, 1)


async def test_a_forged_hop_header_is_just_new_mail(lab: Lab) -> None:
    host, port = lab.endpoint_address("EX2003-B")
    async with aiosmtplib.SMTP(hostname=host, port=port, start_tls=False) as smtp:
        await smtp.sendmail("x@example.net", ["carol@contoso.test"],
                            HOP_HEADER + b": NOSUCHMESSAGE.0000\r\nSubject: hi\r\n\r\nbody\r\n")
    await lab.settle()
    assert (await mailbox(lab, "carol@contoso.test"))["message_count"] == 1
    _, items = await api(lab, "GET", "/api/v1/mailboxes/carol@contoso.test/messages")
    _, raw = await api(lab, "GET", f"/api/v1/messages/{items[0]['id']}/raw")
    assert HOP_HEADER.decode() not in raw
