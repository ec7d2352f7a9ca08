"""mailflow: an emulator of mail flow during Exchange mailbox moves (top layer: the lab and its faces)."""

__version__ = "0.1.0"
