"""Every SMTP reply the endpoints send, named once. ``S<code>_<NAME>`` starts with <code>."""

from __future__ import annotations

S250_SENDER_OK = "250 2.1.0 Sender OK"
S250_RECIPIENT_OK = "250 2.1.5 Recipient OK"
# Exchange 2003 answers DATA with the queue id and this text.
S250_QUEUED = "250 2.6.0 <{queue_id}> Queued mail for delivery"
S451_LOCAL_ERROR = "451 4.3.0 Local error in processing; message not accepted, try again later"
S452_TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
S550_RELAY_DENIED = "550 5.7.1 Unable to relay"
S550_UNKNOWN_USER = "550 5.1.1 User unknown"
S553_BAD_SENDER = "553 5.1.7 The sender address is not a valid mailbox"
S553_BAD_RECIPIENT = "553 5.1.3 The recipient address is not a valid mailbox"


def code(reply: str) -> int:
    return int(reply[:3])
