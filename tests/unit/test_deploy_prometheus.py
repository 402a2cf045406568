"""Prometheus: the deployment and local configs and the alert rules pass promtool and their unit tests;
a real Prometheus scraping the code's metric objects returns data for every dashboard query and evaluates
every alert."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, MetricsHandler

from adapter.metrics import WorkerMetrics
from server.metrics import GatewayMetrics
from stack.ports import free_port
from stack.prometheus import query, render_config, start_prometheus
from tests.dashboards import (
    alert_rules,
    all_queries,
    without_variables,
)
from tests.deploy_tools import COMPOSE, PROM, flag_value, load_yaml, promtool, run

# ---- Prometheus -----------------------------------------------------------------------------------------


def test_deployment_config_is_valid() -> None:
    result = run([promtool(), "check", "config", str(PROM / "prometheus.yml")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_rendered_local_config_is_valid_and_keeps_the_deployment_jobs(tmp_path: Path) -> None:
    targets = {"gateway": "127.0.0.1:8000", "worker": "127.0.0.1:9101", "vllm": "127.0.0.1:8100"}
    config = render_config(targets)
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = run([promtool(), "check", "config", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr

    deployed = load_yaml(PROM / "prometheus.yml")
    assert [j["job_name"] for j in config["scrape_configs"]] == [
        j["job_name"] for j in deployed["scrape_configs"]
    ]
    for local, prod in zip(config["scrape_configs"], deployed["scrape_configs"], strict=True):
        assert local["metrics_path"] == prod["metrics_path"]
        assert local["static_configs"] == [{"targets": [targets[local["job_name"]]]}]
    assert config["rule_files"] == [str((PROM / rule).resolve()) for rule in deployed["rule_files"]]


def test_rendered_config_refuses_an_unknown_job() -> None:
    with pytest.raises(ValueError, match="no job"):
        render_config({"gateways": "127.0.0.1:8000"})


def test_alert_rules_are_valid() -> None:
    result = run([promtool(), "check", "rules", str(PROM / "alerts.yml")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_pass_their_unit_tests() -> None:
    result = run([promtool(), "test", "rules", str(PROM / "alerts_test.yml")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_quiet() -> None:
    cases: dict[str, list[bool]] = {}
    for test in load_yaml(PROM / "alerts_test.yml")["tests"]:
        for case in test.get("alert_rule_test", []):
            cases.setdefault(case["alertname"], []).append(bool(case.get("exp_alerts")))
    for rule in alert_rules():
        outcomes = cases.get(rule["alert"], [])
        assert True in outcomes, f"{rule['alert']}: no test case where it fires"
        assert False in outcomes, f"{rule['alert']}: no test case where it stays quiet"


def test_every_alert_says_what_to_do() -> None:
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert len(rule["annotations"]["description"]) > 80, f"{rule['alert']}: description too thin"


def test_scrape_targets_match_the_compose_services() -> None:
    """gateway:8000, worker:9101, vllm:8000 are the ports the services listen on in compose."""
    services = load_yaml(COMPOSE)["services"]
    ports = {
        "gateway": services["gateway"]["environment"]["TTRV_PORT"],
        "worker": services["worker"]["environment"]["TTRV_METRICS_PORT"],
        "vllm": flag_value(services["vllm"]["command"], "--port"),
    }
    jobs = {
        j["job_name"]: j["static_configs"][0]["targets"]
        for j in load_yaml(PROM / "prometheus.yml")["scrape_configs"]
    }
    assert jobs == {job: [f"{job}:{port}"] for job, port in ports.items()}


def example_metrics() -> tuple[GatewayMetrics, WorkerMetrics]:
    """The code's own metric objects with one child per label value the code uses, as a live stack has."""
    gateway, worker = GatewayMetrics(), WorkerMetrics()
    for route, status, count in (
        ("/v1/answer", "200", 40),
        ("/v1/answer", "503", 2),
        ("/v1/feedback", "422", 1),
    ):
        gateway.requests.labels(route, status).inc(count)
        gateway.duration.labels(route).observe(0.02)
    gateway.enqueue_failures.inc()
    gateway.served_version.set(2)
    gateway.buffered.set(0)
    worker.queue_length.set(120)
    worker.queue_pending.set(64)
    worker.adapter_version.set(2)
    for result in ("promoted", "rejected", "no_signal"):
        worker.rounds.labels(result).inc()
    worker.round_duration.observe(42.0)
    worker.rollouts.inc(32 * 64)
    worker.reward_mean.set(0.4)
    worker.agreement.set(0.7)
    worker.entropy.set(0.3)
    for result in ("ok", "failed"):
        worker.swaps.labels(result).inc()
    worker.swap_duration.observe(0.05)
    worker.rollbacks.inc()
    for signal in ("answers", "inputs", "agreement"):
        worker.drift.labels(signal).set(0.1)
    worker.set_per_version(worker.probe_accuracy, {1: 0.9, 2: 0.85})
    worker.set_per_version(worker.feedback_accuracy, {1: 0.8, 2: 0.75})
    return gateway, worker


@contextmanager
def exporter(registry: CollectorRegistry) -> Iterator[str]:
    """Serve a registry's /metrics on a free loopback port, as the gateway and the worker do."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), MetricsHandler.factory(registry))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_dashboard_and_alert_queries_return_data_from_the_code_metrics(tmp_path: Path) -> None:
    """A real Prometheus (the local stack's config) scrapes the code's metric objects; every ttrv query of
    every dashboard must then return series, and every alert expression must evaluate. This catches what
    parsing cannot: a wrong label name or value, and vector matches that fail only at evaluation time."""
    if shutil.which("prometheus") is None:
        pytest.skip(
            "prometheus is not installed; scripts/bootstrap.sh installs it (apt-get install prometheus)"
        )
    gateway, worker = example_metrics()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with exporter(gateway.registry) as gateway_at, exporter(worker.registry) as worker_at:
        targets = {"gateway": gateway_at, "worker": worker_at}
        proc = start_prometheus(targets, port, tmp_path, tmp_path / "prometheus.log", scrape_interval_s=1)
        try:
            # rate() needs two samples inside its window. Prometheus 2.x starts scraping ~5 s after it is
            # ready (its target discovery updates at most every 5 s), which is most of this test's time.
            proc.wait_ready(
                lambda: len(query(url, "count_over_time(up[1m]) >= 2")) == len(targets), timeout_s=30
            )
            empty = []
            for where, expr in all_queries():
                result = query(url, without_variables(where, expr))  # raises on an evaluation error
                if not result and "vllm:" not in expr and ": annotation " not in where:
                    empty.append(f"{where}: {expr}")
            for rule in alert_rules():
                query(url, rule["expr"])
        finally:
            proc.stop()
    assert not empty, "queries without data from the code's metrics:\n" + "\n".join(empty)
