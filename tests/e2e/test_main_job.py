"""The main job end to end: `ttrv demo` (a shortened scenario) brings the whole stack up, serves a clean
then a drifted stream with delayed labels, adapts, writes its summary and plot, and keeps the stack up;
meanwhile a real Prometheus scrapes it and every dashboard query returns data; Ctrl-C then leaves no process
behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from adapter.tinymodel.build import ensure_model
from clients.sdk import TTRVClient
from core.rows import read_rows
from stack.ports import free_port
from stack.prometheus import query
from stack.settings import StackSettings
from tests.dashboards import alert_rules, all_queries, without_variables

# Queries that show events rather than state: empty unless the event happened in the last minute.
EVENT_QUERIES = ("annotation",)


def processes_with(marker: str) -> list[int]:
    """Pids whose environment carries `marker` (every process the demo starts inherits its TTRV_HOME)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if marker.encode() in (proc / "environ").read_bytes():
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.fixture(scope="module")
def model() -> Path:
    return ensure_model(StackSettings().home, seed=0)


def test_main_job_serves_adapts_shows_every_panel_and_stops_cleanly(model: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    ports = {name: free_port() for name in ("REDIS", "VLLM", "GATEWAY", "WORKER_METRICS", "PROMETHEUS")}
    env = {
        **os.environ,
        "TTRV_HOME": str(home),
        "TTRV_MODEL_PATH": str(model),
        **{f"TTRV_{name}_PORT": str(port) for name, port in ports.items()},
        # A short scenario: enough for a few rounds, drift windows that fill, labels for every panel.
        "TTRV_DEMO_CLEAN_REQUESTS": "40",
        "TTRV_DEMO_DRIFTED_REQUESTS": "160",
        "TTRV_DEMO_RATE": "8",
        "TTRV_DEMO_FEEDBACK_SHARE": "0.2",
        "TTRV_DEMO_PROBE_IMAGES": "20",
        "TTRV_DEMO_EVAL_IMAGES": "40",
        "TTRV_ROUND_MIN_RECORDS": "24",
        "TTRV_ROUND_MAX_RECORDS": "24",
        "TTRV_DRIFT_WINDOW": "30",
        # A 20-image probe cannot show the default 3-point gain over the base in so short a stream, and the
        # swap panels need a promotion: a candidate only has to match the base here.
        "TTRV_MIN_GAIN_OVER_BASE": "0",
    }
    demo = subprocess.Popen(
        [str(Path(sys.executable).parent / "ttrv"), "demo"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    summary_path = home / "runs" / "demo" / "summary.json"
    try:
        deadline = time.monotonic() + 900
        while not summary_path.exists():
            assert demo.poll() is None, f"the demo exited early:\n{demo.stdout.read() if demo.stdout else ''}"
            assert time.monotonic() < deadline, "the scenario did not finish in 15 minutes"
            time.sleep(2.0)
        time.sleep(1.0)
        summary = json.loads(summary_path.read_text())
        assert summary["failed"] == 0
        assert summary["answered"] == 200
        assert summary["rounds"]["promoted"] + summary["rounds"]["rejected"] >= 1
        assert (home / "runs" / "demo" / "demo.png").stat().st_size > 10_000

        # The stack is still up. An application labels a few answers of the version now served (the last
        # promotion may have come after the stream's labels), so its accuracy panel has something to show.
        prometheus = f"http://127.0.0.1:{ports['PROMETHEUS']}"
        api = f"http://127.0.0.1:{ports['GATEWAY']}"
        assert httpx.get(f"{api}/ready").status_code == 200
        with TTRVClient(api) as client:
            for row in list(read_rows(home / "data" / "clean" / "eval.jsonl"))[:8]:
                reply = client.answer(row.image_path, row.prompt)
                client.feedback(reply.id, str(row.answer))
        current_accuracy = (
            'ttrv_feedback_accuracy_ratio and on (version) count_values("version", ttrv_adapter_version)'
        )
        deadline = time.monotonic() + 60
        while not query(prometheus, current_accuracy):  # the worker's next look at the labels, then a scrape
            assert time.monotonic() < deadline, (
                "the served version's feedback accuracy never reached Prometheus"
            )
            time.sleep(1.0)
        # Every dashboard query returns data from the real stack's Prometheus.
        empty = []
        for where, expr in all_queries():
            if not query(prometheus, without_variables(where, expr)) and not any(
                e in where for e in EVENT_QUERIES
            ):
                empty.append(f"{where}: {expr}")
        assert not empty, "dashboard queries without data on the running stack:\n" + "\n".join(empty)
        for rule in alert_rules():
            query(prometheus, rule["expr"])  # raises if the expression fails to evaluate
        assert processes_with(f"TTRV_HOME={home}"), "the stack's processes are not found by their environment"

        demo.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends
        output, _ = demo.communicate(timeout=120)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert "every process the demo started is stopped" in output
    time.sleep(1.0)
    assert processes_with(f"TTRV_HOME={home}") == [], "processes left behind after Ctrl-C"
