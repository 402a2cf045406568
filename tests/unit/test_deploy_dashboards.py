"""Grafana dashboards: every query parses and names a metric the code exports (or vLLM defines), every
contract metric is shown, the pinned datasource, the provisioning path, layout and units."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from adapter.metrics import WorkerMetrics
from server.metrics import GatewayMetrics
from tests.dashboards import (
    CONTRACT_METRICS,
    DASHBOARDS,
    alert_rules,
    all_queries,
    dashboard,
    panels,
    without_variables,
)
from tests.deploy_tools import COMPOSE, DATASOURCE_UID, DESIGN, GRAFANA, load_yaml, promtool, run

# ---- metric names -----------------------------------------------------------------------------------------


def exposed_names(registry: CollectorRegistry) -> set[str]:
    """Every sample name a registry can expose, also for labelled metrics that have no child yet."""
    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "info": ("_info",),
    }
    return {family.name + s for family in registry.collect() for s in suffixes.get(family.type, ("",))}


def code_metric_names() -> set[str]:
    return exposed_names(GatewayMetrics().registry) | exposed_names(WorkerMetrics().registry)


def test_there_are_dashboards() -> None:
    assert {p.name for p in DASHBOARDS} >= {"serving.json", "adaptation.json"}


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    """promtool parses each query as a recording rule; Grafana's variables become plain durations."""
    rules = []
    for i, (where, expr) in enumerate(all_queries()):
        rules.append({"record": f"dashboard:query_{i}", "expr": without_variables(where, expr)})
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = run([promtool(), "check", "rules", str(path)])
    failures = result.stdout + result.stderr
    for i, (where, _) in enumerate(all_queries()):  # name the panel, not the rule index
        failures = failures.replace(f"dashboard:query_{i}", where)
    assert result.returncode == 0, failures


def mentioned(pattern: str, texts: list[tuple[str, str]]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for where, text in texts:
        for name in re.findall(pattern, text):
            found.setdefault(name, set()).add(where)
    return found


def alert_texts() -> list[tuple[str, str]]:
    texts = []
    for rule in alert_rules():
        texts.append((f"alert {rule['alert']}", rule["expr"]))
        texts += [(f"alert {rule['alert']} {k}", v) for k, v in rule["annotations"].items()]
    return texts


def test_every_ttrv_metric_used_exists_in_the_code() -> None:
    """A dashboard or alert on a metric nobody exports shows "No data" forever; catch the typo here."""
    exported = code_metric_names()
    used = mentioned(r"\bttrv_[a-z0-9_]*[a-z0-9]", all_queries() + alert_texts())
    unknown = {name: sorted(where) for name, where in used.items() if name not in exported}
    assert not unknown, f"not exported by GatewayMetrics or WorkerMetrics: {unknown}"


def test_every_vllm_metric_used_exists_in_vllm() -> None:
    """`vllm:*` names must be defined in the installed vLLM (0.32 CPU build; the GPU image is 0.33)."""
    import importlib.util

    spec = importlib.util.find_spec("vllm")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("vllm is not installed in this environment")
    package = Path(spec.submodule_search_locations[0])
    source = "\n".join(p.read_text(errors="replace") for p in package.rglob("*.py"))
    defined = set(re.findall(r"""name\s*=\s*["'](vllm:[a-z0-9_]+)["']""", source))
    used = mentioned(r"vllm:[a-z0-9_]+", all_queries())
    base = {name: re.sub(r"_(total|bucket|sum|count|created)$", "", name) for name in used}
    unknown = {name: sorted(used[name]) for name in used if name not in defined and base[name] not in defined}
    assert not unknown, f"not defined by vLLM: {unknown}"


def test_every_contract_metric_is_on_a_dashboard() -> None:
    shown = " ".join(expr for _, expr in all_queries())
    missing = sorted(m for m in CONTRACT_METRICS if not re.search(rf"\b{m}(_bucket|_sum|_count)?\b", shown))
    assert not missing, f"contract metrics on no dashboard: {missing}"


def test_the_contract_list_matches_the_design() -> None:
    section = DESIGN.read_text().split("## Metrics contract", 1)[1].split("\n## ", 1)[0]
    assert set(re.findall(r"`(ttrv_[a-z0-9_]*[a-z0-9])", section)) == set(CONTRACT_METRICS)


# ---- Grafana ----------------------------------------------------------------------------------------------


def test_datasource_is_provisioned_with_the_pinned_uid() -> None:
    (source,) = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yaml")["datasources"]
    assert source["uid"] == DATASOURCE_UID
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"


def test_every_panel_and_query_uses_the_pinned_datasource() -> None:
    for path in DASHBOARDS:
        board = dashboard(path)
        for panel in panels(board):
            if panel["type"] == "row":
                continue
            where = (path.name, panel["title"])
            assert panel["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}, where
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == DATASOURCE_UID, where
        for annotation in board["annotations"]["list"]:
            if "expr" in annotation:
                assert annotation["datasource"]["uid"] == DATASOURCE_UID, (path.name, annotation["name"])


def test_dashboard_provider_points_at_the_mounted_folder() -> None:
    (provider,) = load_yaml(GRAFANA / "provisioning" / "dashboards" / "ttrv.yaml")["providers"]
    mounts = load_yaml(COMPOSE)["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in mounts


def test_dashboards_are_laid_out_stats_first_without_overlaps() -> None:
    for path in DASHBOARDS:
        board = dashboard(path)
        assert len({board["uid"] for board in map(dashboard, DASHBOARDS)}) == len(DASHBOARDS)
        shown = [p for p in panels(board) if p["type"] != "row"]
        stats = [p["gridPos"]["y"] for p in shown if p["type"] == "stat"]
        series = [p["gridPos"]["y"] for p in shown if p["type"] == "timeseries"]
        assert stats, f"{path.name}: no stat panels"
        assert series, f"{path.name}: no time series panels"
        assert max(stats) < min(series), f"{path.name}: stat panels belong on top"
        cells: dict[tuple[int, int], str] = {}
        for p in panels(board):
            g = p["gridPos"]
            assert g["x"] + g["w"] <= 24, f"{path.name}: {p['title']!r} is wider than the grid"
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in cells, f"{path.name}: {p['title']!r} overlaps {cells[(x, y)]!r}"
                    cells[(x, y)] = p["title"]


def test_panel_units_match_their_metrics() -> None:
    """_ratio metrics are shown as percentages, durations in seconds, and every panel has a unit."""
    for path in DASHBOARDS:
        for panel in panels(dashboard(path)):
            if panel["type"] == "row":
                continue
            unit = panel["fieldConfig"]["defaults"].get("unit")
            assert unit, f"{path.name}: {panel['title']!r} has no unit"
            exprs = " ".join(t["expr"] for t in panel["targets"])
            if re.search(r"_ratio\b", exprs) or "vllm:kv_cache_usage_perc" in exprs:
                assert unit == "percentunit", f"{path.name}: {panel['title']!r} shows a ratio as {unit}"
            if "histogram_quantile" in exprs and "_seconds_bucket" in exprs:
                assert unit == "s", f"{path.name}: {panel['title']!r} shows durations as {unit}"
