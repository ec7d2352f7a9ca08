"""The running lab: its lifecycle, scheduler and data directory.

In: a scenario and a data directory. Out: the endpoints, the API server and the
scheduled work (moves, retries, MTA transfers, DSNs) on the lab clock.
"""
