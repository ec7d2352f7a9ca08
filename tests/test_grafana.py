"""The shipped Grafana dashboard and provisioning, checked for what Grafana needs to load them:
uid, schema version, variables, unique panel ids, data sources, a grid without overlaps."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest

GRAFANA = Path(__file__).resolve().parent.parent / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "mailflow.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRID_COLUMNS = 24
# The panels the observability issue asks for, by title.
REQUIRED_PANELS = {
    "Queue depth", "Queues now", "Mailboxes in transit", "Moves by status",
    "Deferral and release rate", "Deferral latency", "Delivery latency",
    "Deliveries per second", "NDRs by status", "MTA connection failures",
    "SMTP rejections by code", "Stuck RPC queues",
}


def load_dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def panels() -> list[dict[str, Any]]:
    return list(load_dashboard()["panels"])


def exprs() -> list[str]:
    return [t["expr"] for p in panels() for t in p["targets"]]


def test_dashboard_identity() -> None:
    doc = load_dashboard()
    assert doc["uid"] == "mailflow"
    assert doc["schemaVersion"] >= 38  # Grafana 10
    assert doc["title"] and doc["id"] is None


def test_template_variables() -> None:
    variables = {v["name"]: v for v in load_dashboard()["templating"]["list"]}
    assert set(variables) == {"datasource", "server", "queue"}
    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == (
        "datasource", "prometheus")
    for name in ("server", "queue"):
        variable = variables[name]
        assert variable["type"] == "query" and variable["datasource"] == DATASOURCE
        assert variable["query"]["query"] == variable["definition"]
        assert re.fullmatch(rf"label_values\(mailflow_queue_messages(\{{.*\}})?, {name}\)",
                            variable["definition"])
        # "All" must be a regex the =~ matchers accept.
        assert variable["includeAll"] and variable["allValue"] == ".*"


def test_every_panel_is_complete_and_uses_the_datasource_variable() -> None:
    ids = [p["id"] for p in panels()]
    assert len(ids) == len(set(ids))
    for panel in panels():
        assert panel["title"] and panel["description"], panel["id"]
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for t in panel["targets"]:
            assert t["datasource"] == DATASOURCE and t["expr"].strip(), panel["title"]
    assert {p["title"] for p in panels()} >= REQUIRED_PANELS


def test_grid_positions_fit_and_do_not_overlap() -> None:
    boxes = []
    for panel in panels():
        g = panel["gridPos"]
        assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["y"] >= 0, panel["title"]
        assert g["x"] + g["w"] <= GRID_COLUMNS, panel["title"]
        boxes.append((panel["title"], g))
    for (a, p), (b, q) in itertools.combinations(boxes, 2):
        apart = (p["x"] + p["w"] <= q["x"] or q["x"] + q["w"] <= p["x"]
                 or p["y"] + p["h"] <= q["y"] or q["y"] + q["h"] <= p["y"])
        assert apart, f"{a} overlaps {b}"


def test_rates_use_the_rate_interval_and_variables_are_regex_matched() -> None:
    for expr in exprs():
        for window in re.findall(r"\brate\([^\[]*\[([^\]]+)\]", expr):
            assert window == "$__rate_interval", expr
        # A multi-value variable expands to a regex: it only works after =~.
        for op in re.findall(r'(=~|!~|!=|=)"[^"]*\$(?:server|queue|\{server\}|\{queue\})',
                             expr):
            assert op == "=~", expr


def test_stuck_rpc_panel_matches_the_alert() -> None:
    stuck = next(p for p in panels() if p["title"] == "Stuck RPC queues")
    window = re.findall(r"increase\(mailflow_mta_connection_failures_total[^\[]*\[(\w+)\]",
                        stuck["targets"][0]["expr"])
    alerts = (GRAFANA / "prometheus" / "alerts.yml").read_text()
    assert window == ["15m"]
    assert "increase(mailflow_mta_connection_failures_total[15m])" in alerts


@pytest.mark.parametrize("name", ["datasources/prometheus.yml", "dashboards/mailflow.yml"])
def test_provisioning_files_declare_version_1(name: str) -> None:
    assert "\napiVersion: 1\n" in (GRAFANA / "provisioning" / name).read_text()


def test_datasource_provisioning_points_at_the_shipped_prometheus() -> None:
    text = (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    prometheus = (GRAFANA / "prometheus" / "prometheus.yml").read_text()
    assert "type: prometheus" in text and "url: http://127.0.0.1:9090" in text
    # $__rate_interval builds on the scrape interval Grafana is told.
    interval = re.search(r"scrape_interval: (\w+)", prometheus)
    assert interval is not None and f"timeInterval: {interval[1]}" in text


def test_dashboard_provider_finds_the_dashboard_from_gf_paths_provisioning() -> None:
    text = (GRAFANA / "provisioning" / "dashboards" / "mailflow.yml").read_text()
    path = re.search(r"^\s+path: (\S+)$", text, re.MULTILINE)
    assert path is not None
    provisioning = str(GRAFANA / "provisioning")
    resolved = Path(path[1].replace("${GF_PATHS_PROVISIONING}", provisioning)).resolve()
    assert resolved == DASHBOARD.parent
