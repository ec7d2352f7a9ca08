"""The running lab: its lifecycle, scheduler and data directory.

In: a scenario and a data directory. Out: the endpoints, the API server and the
scheduled work (moves, retries, MTA transfers, DSNs) on the lab clock.
``lab`` starts and stops a lab (and routes what its endpoints accept),
``scheduler`` runs the work that falls due, ``datadir`` holds the lock, the
token and ``lab.json``.
"""
