"""The web interface: Exchange System Manager in the browser, served by the lab at ``/``.

In: the API's aiohttp application and the running lab (``mailflow.web.site.install``).
Out: server-rendered pages (aiohttp-jinja2), one module per page group, live over
Server-Sent Events (``mailflow.web.live``); the API stays under ``/api/v1``.
"""
