"""Mailbox moves: move requests in; PR_IN_TRANSIT, the directory update and released mail out.

``dispatch`` is the front (start a move, act on one, let the clock drive them,
recover after a restart); ``wizard2003`` (the 2003 wizard and 2007's offline
Move-Mailbox) and ``mrs2010`` (2010 move requests) are the engines, sharing
``common``; ``states`` is the move status machine; ``describe`` and ``report``
show a move as JSON and as the wizard's XML report. This package module itself
imports nothing, so no engine imports it back.
"""
