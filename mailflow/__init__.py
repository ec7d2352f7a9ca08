"""mailflow: an emulator of mail flow during Exchange mailbox moves.

The top layer: the running lab and its faces (SMTP, HTTP API, CLI, metrics).
"""

__version__ = "0.1.0"
