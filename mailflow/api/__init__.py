"""The HTTP face: aiohttp JSON API under ``/api/v1``, ``/metrics`` and ``/healthz``.

In: HTTP requests. Out: JSON (or XML, raw mail, Prometheus text) read from the
store, and admin actions run as store writes. One module per resource.
"""
