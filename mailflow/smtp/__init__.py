"""The SMTP face: one endpoint per emulated server, protocol only.

In: SMTP sessions on real sockets. Out: each accepted message handed to the
router (``routing``) and the reply it earned; no policy lives here.
``endpoint`` listens, ``connection`` reads lines (on aiosmtpd), ``session``
answers the commands, ``replies`` names every reply as a ``Reply(code, text)``.
"""
