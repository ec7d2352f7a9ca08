"""The private members of aiosmtpd that mailflow.smtp relies on are still there.

mailflow.smtp.connection lists them (``AIOSMTPD_PRIVATE_METHODS`` and
``AIOSMTPD_PRIVATE_ATTRIBUTES``); a new aiosmtpd that drops or renames one makes
this test fail with the name of each one missing, rather than an endpoint fail
in some session far from the cause.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiosmtpd.smtp import SMTP

from mailflow.smtp.connection import AIOSMTPD_PRIVATE_ATTRIBUTES, AIOSMTPD_PRIVATE_METHODS


def test_the_private_methods_mailflow_uses_or_overrides_exist() -> None:
    missing = [name for name in AIOSMTPD_PRIVATE_METHODS
               if not callable(getattr(SMTP, name, None))]
    assert not missing, f"aiosmtpd.smtp.SMTP no longer has: {', '.join(missing)}"


async def test_the_private_attributes_mailflow_reads_are_set_on_a_connected_session() -> None:
    sessions: list[SMTP] = []

    def factory() -> SMTP:
        sessions.append(SMTP(None, hostname="contract.test", loop=asyncio.get_running_loop()))
        return sessions[-1]

    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    try:
        host, port = server.sockets[0].getsockname()[:2]
        reader, writer = await asyncio.open_connection(host, port)
        await reader.readline()  # the greeting: the session is connected
        session: Any = sessions[0]
        missing = [name for name in AIOSMTPD_PRIVATE_ATTRIBUTES if not hasattr(session, name)]
        writer.write(b"QUIT\r\n")
        await reader.readline()
        writer.close()
        await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()
    assert not missing, f"aiosmtpd's SMTP sessions no longer have: {', '.join(missing)}"
