"""MAPI store error codes the emulated store driver returns.

Values from MS-OXCSTOR §3.2.5.1.3 and OpenChange ``mapistatus.h`` (see
shared/domain/exchange-facts.md).
"""

from __future__ import annotations

import enum


class MapiError(enum.IntEnum):
    ecUnknownUser = 0x3EB
    ecWrongServer = 0x478
    ecServerPaused = 0x47F
    # "The mailbox is in transit; logon is not allowed" (no MAPI_E_ alias).
    ecMailboxInTransit = 0x50C
    ecMailboxDisabled = 0x96C

    def describe(self) -> str:
        """The form Exchange logs it in, e.g. ``ecMailboxInTransit (0x50C)``."""
        return f"{self.name} (0x{self.value:X})"
