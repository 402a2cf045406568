"""A local Prometheus (Debian's package) scraping the local stack with the deployment's jobs and alert rules.

The config is rendered from deploy/prometheus/prometheus.yml, not written separately: the job names, metric
paths and rule files are the deployment's, and only each job's target (a compose host name there) becomes the
local host:port. So the dashboards' and alerts' queries can be evaluated for real against the local stack,
with the same `job` labels they select on in production.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml

from stack.process import LaunchError, ManagedProcess

DEPLOY_CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "prometheus" / "prometheus.yml"


class PrometheusError(RuntimeError):
    """Prometheus refused a query (bad PromQL, or a server-side error); the message is its own."""


def render_config(
    targets: Mapping[str, str], scrape_interval_s: float = 2.0, source: Path = DEPLOY_CONFIG
) -> dict[str, Any]:
    """The deployment's config with each job's target replaced by a local `host:port`.

    `targets` maps job names to addresses; a job of the deployment not named there is left out (a stack
    started without vLLM should not show vLLM as down). Rule files become absolute paths, so the config works
    from any folder. The interval is shorter than the deployment's: tests wait for scrapes.
    """
    config: dict[str, Any] = yaml.safe_load(source.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    unknown = sorted(set(targets) - set(jobs))
    if unknown:
        raise ValueError(f"no job {unknown} in {source}; its jobs are {sorted(jobs)}")
    interval = f"{scrape_interval_s:g}s"
    config["global"] = {
        **config.get("global", {}),
        "scrape_interval": interval,
        "scrape_timeout": interval,
        "evaluation_interval": interval,
        "external_labels": {"deployment": "local"},
    }
    config["rule_files"] = [str((source.parent / rule).resolve()) for rule in config.get("rule_files", [])]
    config["scrape_configs"] = [
        {**jobs[name], "static_configs": [{"targets": [address]}]} for name, address in targets.items()
    ]
    return config


def write_config(path: Path, targets: Mapping[str, str], scrape_interval_s: float = 2.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(render_config(targets, scrape_interval_s), sort_keys=False))
    return path


def prometheus_argv(config: Path, data_dir: Path, port: int, host: str = "127.0.0.1") -> list[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        raise LaunchError(
            "prometheus is not installed: run scripts/bootstrap.sh (apt-get install prometheus)"
        )
    return [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={data_dir}",
        f"--web.listen-address={host}:{port}",
        "--storage.tsdb.retention.time=1d",  # a run folder's data is for that run
    ]


def ready(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/-/ready", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def start_prometheus(
    targets: Mapping[str, str],
    port: int,
    run_dir: Path,
    log_path: Path,
    host: str = "127.0.0.1",
    scrape_interval_s: float = 2.0,
) -> ManagedProcess:
    """Write the config into `run_dir`, start Prometheus on `host:port`, and wait until it is ready (~1 s)."""
    config = write_config(run_dir / "prometheus.yml", targets, scrape_interval_s)
    argv = prometheus_argv(config, run_dir / "data", port, host)
    proc = ManagedProcess("prometheus", argv, log_path).start()
    base_url = f"http://{host}:{port}"
    proc.wait_ready(lambda: ready(base_url), timeout_s=60)
    return proc


def _api(base_url: str, path: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
    reply = httpx.post(f"{base_url}/api/v1/{path}", data=dict(params), timeout=10.0)
    try:
        body: dict[str, Any] = reply.json()
    except ValueError:
        raise PrometheusError(f"HTTP {reply.status_code} from {reply.url}: {reply.text[:200]}") from None
    if body.get("status") != "success":
        raise PrometheusError(f"{body.get('errorType', reply.status_code)}: {body.get('error', reply.text)}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def query(base_url: str, promql: str, at: float | None = None) -> list[dict[str, Any]]:
    """Evaluate an instant query: a list of `{"metric": {labels}, "value": [time, "value"]}`.

    Raises `PrometheusError` if the expression does not parse or fails, so a test of a dashboard's queries
    fails on a query Prometheus rejects, not only on one that returns nothing.
    """
    params = {"query": promql} if at is None else {"query": promql, "time": f"{at:.3f}"}
    return _api(base_url, "query", params)


def query_range(base_url: str, promql: str, start: float, end: float, step_s: float) -> list[dict[str, Any]]:
    """Evaluate a range query: a list of `{"metric": {labels}, "values": [[time, "value"], ...]}`."""
    params = {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step_s:g}"}
    return _api(base_url, "query_range", params)


def scraped(base_url: str, jobs: Iterable[str]) -> bool:
    """True when the last scrape of every named job succeeded (`up == 1`)."""
    try:
        up = {r["metric"]["job"]: r["value"][1] == "1" for r in query(base_url, "up")}
    except (httpx.HTTPError, PrometheusError):
        return False
    return all(up.get(job, False) for job in jobs)
