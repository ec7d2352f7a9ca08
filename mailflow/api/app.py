"""The HTTP API (aiohttp): the application assembled from its resources, and served.

In: a running lab (any ``mailflow.api.handle.LabHandle``) and an address. Out:
the aiohttp application with the middlewares (``mailflow.api.middleware``: JSON
errors, the Host check, bearer-token auth) and every resource module's ``RouteTableDef``, and
the web interface (``mailflow.web``, at ``/``), and
``serve``, which starts it and tells where it listens (``http://[::1]:port`` for
IPv6). Reads are open unless the lab requires the token for reads; every request
that changes state needs ``Authorization: Bearer <token>`` (the token in
``<data>/api-token``). Also serves ``/metrics`` for Prometheus and ``/healthz``.
"""

from __future__ import annotations

from aiohttp import web

from mailflow.api import adc as adc_api
from mailflow.api import (
    audit,
    clock,
    connectors,
    databases,
    events,
    faults,
    health,
    mailboxes,
    messages,
    moves,
    openapi,
    processes,
    queues,
    system_mailbox,
    topology,
    tracking,
    waiting,
)
from mailflow.api import directory as directory_api
from mailflow.api.handle import LAB, LabHandle
from mailflow.api.middleware import auth, errors, host_check
from mailflow.web import site as ui  # the web interface at / (issue 21)

MAX_BODY = 1024 * 1024
# In the order they were registered when the API was one module.
# waiting before messages: /messages/wait must not be taken as /messages/{id}.
RESOURCES = (health, topology, mailboxes, waiting, messages, queues, moves, connectors, events,
             audit, clock, faults, openapi, tracking, system_mailbox, databases, directory_api,
             adc_api, processes)


def build_app(lab: LabHandle) -> web.Application:
    """The API's application for ``lab``, with the web interface at ``/``."""
    app = web.Application(middlewares=[errors, host_check, auth, *ui.MIDDLEWARES],
                          client_max_size=MAX_BODY)
    app[LAB] = lab
    for resource in RESOURCES:
        app.add_routes(resource.routes)
    ui.install(app, lab)
    return app


async def serve(lab: LabHandle, host: str, port: int) -> tuple[web.AppRunner, str]:
    """Start the API; returns the runner (to clean up) and the URL it listens on."""
    runner = web.AppRunner(build_app(lab), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_host, bound_port = runner.addresses[0][:2]
    if ":" in bound_host:
        bound_host = f"[{bound_host}]"
    return runner, f"http://{bound_host}:{bound_port}"
