"""`ttrv demo`: the main job. The whole stack on embedded defaults, a drifting stream, adaptation, recovery.

1. `ttrv up`'s stack (Redis, vLLM with the built-in model, gateway, worker, Prometheus), from a fresh state.
2. The scenario (stack/scenario.py): clean digits, then a shifted stream (contrast by default, where
   adaptation is known to help), with 5% delayed labels through `/v1/feedback`; live progress meanwhile.
3. Each served version's greedy accuracy on held-out images (stack/evaluation.py), a summary table, the
   plot (stack/plot.py) and `summary.json` under `runs/demo/`.
4. The stack stays up, URLs printed, until Ctrl-C, which stops every process it started.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from dataclasses import asdict, dataclass
from types import FrameType

from rich.console import Console
from rich.live import Live
from rich.table import Table

from stack.evaluation import VersionAccuracy, base_answers_correct, evaluate_versions
from stack.plot import plot_run
from stack.process import LaunchError
from stack.prometheus import query_range
from stack.scenario import ScenarioLog, Served, phases, run_scenario, shifted_eval, write_probe
from stack.settings import StackSettings
from stack.up import LocalStack, running_stack

# Worker settings for a stream of a few requests per second on 2 CPU cores, where vLLM's sampling is the
# bottleneck: rounds of 32 records (8 held back for the gate), two passes of GRPO over each round's groups
# instead of a replay buffer (half the rollouts), and one training thread. The stream shows every image
# twice, but the worker trains on each distinct request once (it deduplicates by content): the second
# showing measures what adaptation did. A TTRV_* variable set in the environment wins over these.
DEMO_WORKER = {
    "TTRV_ROUND_MIN_RECORDS": "32",
    "TTRV_ROUND_MAX_RECORDS": "32",
    "TTRV_ROUND_INTERVAL_S": "30",
    "TTRV_EPOCHS": "2",
    "TTRV_REPLAY_SHARE": "0",
    "TTRV_MAX_TOKENS": "4",
    "TTRV_SWAP_GRACE_S": "5",
    "TTRV_DRIFT_WINDOW": "100",
    "TTRV_GATE_MIN_LABELS": "10",
    "TTRV_ROLLBACK_MIN_LABELS": "10",
    "TTRV_ROLLBACK_CHECK_S": "10",
    "TTRV_LOG_JSON": "false",
    # vLLM's CPU engine keeps the cores busy; two torch threads contending with it make each GRPO step
    # several times slower than one thread does (measured: 2-3 s against 0.3 s per step).
    "OMP_NUM_THREADS": "1",
}


def _stop_on_sigterm() -> None:
    """SIGTERM (e.g. from a supervisor) stops the stack like Ctrl-C does."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def worker_overrides(settings: StackSettings) -> dict[str, str]:
    tuned = {k: v for k, v in DEMO_WORKER.items() if k not in os.environ}
    probe = write_probe(settings, settings.runs_dir / "demo-probe.jsonl")
    if probe is not None and "TTRV_PROBE_PATH" not in os.environ:
        tuned["TTRV_PROBE_PATH"] = str(probe)
    return {**tuned, "TTRV_SEED": str(settings.demo_seed)}


@dataclass(frozen=True)
class Window:
    """A stretch of the served stream: its accuracy, and the base model's on exactly the same requests."""

    first: int  # request numbers within the phase, 1-based
    last: int
    served: float
    base: float

    @property
    def gain(self) -> float:
        return self.served - self.base


def windows(events: list[Served], base_correct: dict[str, bool], size: int) -> list[Window]:
    """Consecutive windows of `size` served requests (the last may be shorter), paired with the base.

    >>> e = [Served(0.0, "x", 1, c, r) for c, r in [(True, "a"), (True, "b"), (False, "a")]]
    >>> [(w.first, w.last, w.served, w.base) for w in windows(e, {"a": False, "b": True}, 2)]
    [(1, 2, 1.0, 0.5), (3, 3, 0.0, 0.0)]
    """
    out = []
    for start in range(0, len(events), size):
        part = events[start : start + size]
        served = sum(e.correct for e in part) / len(part)
        base = sum(base_correct[e.row_id] for e in part) / len(part)
        out.append(Window(start + 1, start + len(part), served, base))
    return out


def served_table(log: ScenarioLog, drifted: str, paired: list[Window]) -> Table:
    table = Table(
        "requests", "served accuracy", "base model, same requests", "gain (points)",
        title=f"served accuracy on the {drifted} stream, against the base model on the same requests",
    )  # fmt: skip
    clean, n = log.accuracy(log.in_phase("clean"))
    table.add_row(f"clean 1-{n}", f"{clean:.1%}", "", "")
    for w in paired:
        colour = "green" if w.gain > 0 else "red" if w.gain < 0 else "white"
        table.add_row(
            f"{drifted} {w.first}-{w.last}", f"{w.served:.1%}", f"{w.base:.1%}",
            f"[{colour}]{w.gain * 100:+.1f}[/{colour}]",
        )  # fmt: skip
    return table


def versions_table(results: list[VersionAccuracy], drifted: str) -> Table:
    table = Table(
        "version", "status", f"held-out {drifted}", "held-out clean", title="greedy accuracy per version"
    )
    base = results[0].shifted if results else 0.0
    for r in results:
        delta = f" ({(r.shifted - base) * 100:+.1f})" if r.version else ""
        table.add_row(
            f"v{r.version}", r.status, f"{r.shifted:.1%}{delta}", "" if r.clean is None else f"{r.clean:.1%}"
        )
    return table


def _finish(
    stack: LocalStack, settings: StackSettings, log: ScenarioLog, console: Console
) -> dict[str, object]:
    from adapter.digits.dataset import stream_name

    drifted = stream_name(settings.demo_shift, settings.demo_severity)
    assert log.adapters is not None
    clean_rows = settings.home / "data" / "clean" / "eval.jsonl"
    with console.status("evaluating every served version on held-out images"):
        results = asyncio.run(
            evaluate_versions(
                stack.vllm_url,
                log.adapters,
                shifted_eval(settings),
                clean_rows,
                settings.demo_eval_images,
                skip_shifted=settings.demo_probe_images,
            )
        )
    with console.status("asking the base model the stream's questions, for the paired comparison"):
        base_correct = asyncio.run(
            base_answers_correct(stack.vllm_url, [r for p in phases(settings) for r in p.rows])
        )
    paired = windows(log.in_phase(drifted), base_correct, 100)
    console.print(served_table(log, drifted, paired))
    console.print(versions_table(results, drifted))
    drift = query_range(stack.prometheus, "ttrv_drift_score", log.started, time.time(), 5.0)
    picture = plot_run(
        log.served, base_correct, log.adapters.history, drift, log.started, stack.run_dir / "demo.png"
    )
    w = log.worker
    summary = {
        "shift": drifted,
        "seed": settings.demo_seed,
        "elapsed_s": round(time.time() - log.started, 1),
        "answered": len(log.served),
        "failed": log.failed,
        "served_clean": log.accuracy(log.in_phase("clean"))[0],
        "served_drifted_windows": [{**asdict(w), "gain": w.gain} for w in paired],
        "versions": [asdict(r) for r in results],
        "current": log.adapters.current,
        "rounds": {
            k.split("{")[1].rstrip("}"): v
            for k, v in w.items()
            if k.startswith("ttrv_adaptation_rounds_total{")
        },
        "rollbacks": w.get("ttrv_rollbacks_total", 0.0),
    }
    (stack.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    console.print(f"plot: [bold]{picture}[/bold]; summary: {stack.run_dir / 'summary.json'}")
    return summary


def _pause_adaptation(stack: LocalStack) -> None:
    import redis

    from core import keys

    client = redis.Redis.from_url(stack.redis_url)
    client.set(keys.ADAPTATION_PAUSED, "1")  # what POST /v1/adaptation/pause does
    client.close()


def wait_for_ctrl_c(stack: LocalStack, console: Console) -> None:
    table = Table(show_header=False, title="the stack is up (Ctrl-C stops it)", title_justify="left")
    for what, url in stack.urls().items():
        table.add_row(what, url)
    console.print(table)
    while True:
        dead = [p.name for p in stack.processes if not p.alive()]
        if dead:
            console.print(f"[red]{', '.join(dead)} exited[/red]; logs in {stack.run_dir}")
            return
        time.sleep(1.0)


def run_demo(settings: StackSettings, console: Console, wait: bool = True) -> int:
    _stop_on_sigterm()
    try:
        with running_stack(settings, console, "demo", fresh=True, worker_extra=worker_overrides(settings),
                           gateway_extra={"TTRV_LOG_JSON": "false"}) as stack:  # fmt: skip
            console.print(f"stack up: API {stack.api} (docs {stack.api}/docs), Prometheus {stack.prometheus}")
            with Live(console=console, refresh_per_second=2) as live:
                log = asyncio.run(run_scenario(stack, settings, live))
            _pause_adaptation(stack)  # the stream is over: measure the versions it produced, as they are
            summary = _finish(stack, settings, log, console)
            if wait:
                wait_for_ctrl_c(stack, console)
            return 0 if summary["failed"] == 0 else 1
    except LaunchError as err:
        console.print(f"[red]{err}[/red]")
        return 1
    except KeyboardInterrupt:
        console.print("stopped: every process the demo started is stopped")
        return 130


def run_up(settings: StackSettings, console: Console) -> int:
    """`ttrv up`: the stack alone, state kept across runs (runs/up), until Ctrl-C."""
    _stop_on_sigterm()
    try:
        with running_stack(settings, console, "up", fresh=False) as stack:
            wait_for_ctrl_c(stack, console)
            return 1
    except LaunchError as err:
        console.print(f"[red]{err}[/red]")
        return 1
    except KeyboardInterrupt:
        console.print("stopped: every process `ttrv up` started is stopped")
        return 0
