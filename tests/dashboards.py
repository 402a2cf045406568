"""The PromQL of the checked-in dashboards and alert rules, for the tests that check them (offline, and
against the running stack)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
PROM = ROOT / "deploy" / "prometheus"
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
# docs/design.md's metrics contract (a test checks that this list still matches it, so the dashboards are
# always checked against the contract).
CONTRACT_METRICS = (
    "ttrv_adaptation_round_duration_seconds",
    "ttrv_adaptation_rounds_total",
    "ttrv_adapter_swap_duration_seconds",
    "ttrv_adapter_swaps_total",
    "ttrv_adapter_version",
    "ttrv_answer_entropy_ratio",
    "ttrv_drift_score",
    "ttrv_enqueue_failures_total",
    "ttrv_feedback_accuracy_ratio",
    "ttrv_probe_accuracy_ratio",
    "ttrv_queue_length",
    "ttrv_queue_pending",
    "ttrv_request_duration_seconds",
    "ttrv_requests_total",
    "ttrv_reward_mean",
    "ttrv_rollbacks_total",
    "ttrv_rollouts_total",
    "ttrv_served_adapter_version",
    "ttrv_vote_agreement_ratio",
)
# Grafana's built-in variables, replaced by durations of the same kind so that Prometheus can run the query.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}


def dashboard(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])  # panels inside collapsed rows


def queries(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query annotation of a dashboard."""
    for panel in panels(board):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for annotation in board.get("annotations", {}).get("list", []):
        if "expr" in annotation:
            yield f"annotation {annotation['name']!r}", annotation["expr"]


def all_queries() -> list[tuple[str, str]]:
    return [
        (f"{path.name}: {where}", expr) for path in DASHBOARDS for where, expr in queries(dashboard(path))
    ]


def without_variables(where: str, expr: str) -> str:
    for variable, duration in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, duration)
    assert "$" not in expr, f"{where}: a Grafana variable this test does not know: {expr}"
    return expr


def alert_rules() -> list[dict[str, Any]]:
    rules = yaml.safe_load((PROM / "alerts.yml").read_text())
    return [rule for group in rules["groups"] for rule in group["rules"]]
