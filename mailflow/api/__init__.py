"""The HTTP face: aiohttp JSON API under ``/api/v1``, ``/metrics`` and ``/healthz``.

In: HTTP requests. Out: JSON (or XML, raw mail, Prometheus text) read from the
store, and admin actions run as store writes. One module per resource, each with
its ``RouteTableDef``; ``app`` assembles and serves them, ``middleware`` turns
errors into JSON and checks the token, ``request`` parses what comes in, and
``handle`` names the lab (``LabHandle``) without importing ``mailflow.runtime``.
"""
