"""The OpenAPI description of /api/v1 is a valid OpenAPI 3 document, describes every route the
API serves (and no other), and a bounded property-based run (schemathesis) against a live lab
finds no 5xx and no answer outside the description."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, cast

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from mailflow.api.app import build_app
from mailflow.api.openapi import document
from tests.process import LabProcess, cli, ephemeral_scenario

# A value for each path parameter, to turn a described path into a URL a route must match.
SAMPLES = {"server": "EX2003-A", "queue": "deferred", "id": "1", "address": "a@contoso.test",
           "service": "mta", "db": "DAG-DB01"}
METHODS = ("get", "post", "put", "patch", "delete")


def test_the_description_is_valid_openapi() -> None:
    validate(cast(Any, document()))


def _described() -> set[tuple[str, str]]:
    """(METHOD, sample URL) of every operation of the description."""
    operations = set()
    for path, item in document()["paths"].items():
        url = re.sub(r"\{(\w+)\}", lambda m: SAMPLES[m[1]], path)
        operations |= {(method.upper(), url) for method in item if method in METHODS}
    return operations


def _served() -> list[tuple[str, re.Pattern[str], str]]:
    """(METHOD, pattern, canonical path) of every route under /api/v1."""
    app = build_app(cast(Any, None))
    served = []
    for route in app.router.routes():
        resource = route.resource
        if route.method == "HEAD" or resource is None or \
                not resource.canonical.startswith("/api/v1/"):
            continue
        info = resource.get_info()
        pattern = info.get("pattern") or re.compile(re.escape(info["path"]))
        served.append((route.method, pattern, resource.canonical))
    return served


def test_every_route_under_api_v1_is_described_and_nothing_else() -> None:
    described, served = _described(), _served()
    undescribed = [f"{method} {canonical}" for method, pattern, canonical in served
                   if not any(m == method and pattern.fullmatch(url) for m, url in described)]
    assert not undescribed, f"routes missing from the OpenAPI description: {undescribed}"
    unserved = [f"{method} {url}" for method, url in described
                if not any(m == method and p.fullmatch(url) for m, p, _ in served)]
    assert not unserved, f"described but not served: {unserved}"


def test_the_lab_serves_its_description(lab_process: LabProcess) -> None:
    answer = requests.get(f"{lab_process.api}/api/v1/openapi.json", timeout=30)
    assert answer.status_code == 200 and answer.json() == document()


# Per operation; bounded in count (and each request by its timeout) so the run stays short.
EXAMPLES = 8
# GET /api/v1/messages/wait holds a request up to its timeout (30 s when absent): the run
# always gives one, of at most WAIT seconds.
WAIT = 0.5


def _bounded() -> dict[str, Any]:
    """The description with the wait's timeout required and at most ``WAIT``."""
    doc = document()
    for parameter in doc["paths"]["/api/v1/messages/wait"]["get"]["parameters"]:
        if parameter["name"] == "timeout":
            parameter["required"] = True
            parameter["schema"] = {**parameter["schema"], "maximum": WAIT}
    return doc
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


def test_schemathesis_finds_no_5xx_and_nothing_outside_the_description(
        lab_process: LabProcess) -> None:
    schema = schemathesis.openapi.from_dict(_bounded())
    headers = {"Authorization": f"Bearer {lab_process.token}"}
    # Mail in a queue first, so that the lists hold rows to check against their schemas; and
    # objects that exist (a random name is mostly a 404).
    cli(lab_process.data, "move", "start", "alice@contoso.test", "--to", "EX2003-B", "--hold")
    cli(lab_process.data, "send", "--to", "alice@contoso.test")
    for path, params in (("/api/v1/queues", {}),
                         ("/api/v1/queues/{server}/{queue}/messages",
                          {"server": "EX2003-A", "queue": "deferred"}),
                         ("/api/v1/tracking", {}),
                         ("/api/v1/moves", {}),
                         ("/api/v1/mailboxes/{address}", {"address": "alice@contoso.test"}),
                         ("/api/v1/directory/{address}", {"address": "alice@contoso.test"}),
                         ("/api/v1/adc", {})):
        case = schema[path]["GET"].Case(path_parameters=params)
        response = case.call(base_url=lab_process.api, timeout=30)
        assert response.json(), path
        case.validate_response(response, checks=CHECKS)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            response = case.call(base_url=lab_process.api, headers=headers, timeout=30)
            case.validate_response(response, checks=CHECKS)

        run()



# (method, path, path parameters, body, the status the DAG lab answers), in order.
DB = {"db": "DAG-DB01"}
PASSIVE = {**DB, "server": "EX2010-D1"}
DAG_CALLS: list[tuple[str, str, dict[str, str], dict[str, Any] | None, int]] = [
    ("GET", "/api/v1/queues", {}, None, 200),
    ("POST", "/api/v1/moves", {}, {"mailbox": "carol@contoso.test", "target": "EX2010-R1"}, 201),
    ("GET", "/api/v1/mailboxes/{address}", {"address": "carol@contoso.test"}, None, 200),
    ("GET", "/api/v1/databases", {}, None, 200),
    ("GET", "/api/v1/databases/{db}", DB, None, 200),
    ("GET", "/api/v1/databases/{db}/system-mailbox", DB, None, 200),
    ("GET", "/api/v1/databases/{db}/system-mailbox", {"db": "NO-SUCH-DB"}, None, 404),
    ("POST", "/api/v1/databases/{db}/copies/{server}/lag", PASSIVE, {"copy_queue_length": 7}, 200),
    ("POST", "/api/v1/databases/{db}/copies/{server}/lag", {**DB, "server": "EX2010-R1"},
     {"copy_queue_length": 7}, 400),
    ("POST", "/api/v1/databases/{db}/copies/{server}/suspend", PASSIVE, None, 200),
    ("POST", "/api/v1/databases/{db}/copies/{server}/suspend", PASSIVE, None, 409),
    ("POST", "/api/v1/databases/{db}/copies/{server}/resume", PASSIVE, None, 200),
    ("POST", "/api/v1/databases/{db}/dismount", DB, None, 200),
    ("POST", "/api/v1/databases/{db}/mount", DB, None, 200),
    ("POST", "/api/v1/databases/{db}/mount", DB, None, 409),
    ("POST", "/api/v1/databases/{db}/failover", DB, {"server": "EX2010-R2"}, 200),
    ("GET", "/api/v1/adc", {}, None, 409),
]


def test_a_dag_lab_answers_within_the_description(tmp_path: Path) -> None:
    """The default lab has no DAG database (every database route answers 404 there), so
    the answers with databases in them are checked against a lab of exchange-2010-dag."""
    process = LabProcess(tmp_path)
    process.scenario = ephemeral_scenario(tmp_path, "exchange-2010-dag")
    process.start()
    try:
        schema = schemathesis.openapi.from_dict(document())
        headers = {"Authorization": f"Bearer {process.token}"}
        for method, path, params, doc, status in DAG_CALLS:
            extra = {} if doc is None else {"body": doc}
            case = schema[path][method].Case(path_parameters=params, **extra)
            response = case.call(base_url=process.api, headers=headers, timeout=30)
            assert response.status_code == status, (path, response.text)
            case.validate_response(response, checks=CHECKS)
    finally:
        code, _, err = process.stop()
        assert code == 0, err
