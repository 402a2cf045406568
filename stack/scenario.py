"""The demo's scenario: a clean stream, then a drifted one, replayed through the public API as an application
would send it, with a small share of delayed labels sent back through `/v1/feedback`.

Everything shown is measured from real events: served accuracy comes from the replies themselves (each
names the adapter version that produced it) checked against the rows' labels, which the server never sees
except through the feedback share; rounds, drift and rollbacks come from the worker's `/metrics`; versions
and their statuses from `GET /v1/adapters`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Group
from rich.live import Live
from rich.table import Table

from clients.models import AdapterList, Answer
from clients.sdk import AsyncTTRVClient
from core.answers import is_correct
from core.rows import Row, read_rows
from stack.replay import replay_async
from stack.settings import StackSettings
from stack.up import LocalStack

ADAPT_IMAGES = 400  # the built-in adaptation split


@dataclass(frozen=True)
class Phase:
    name: str
    rows: list[Row]


@dataclass(frozen=True)
class Served:
    t: float  # seconds since the scenario started
    phase: str
    version: int
    correct: bool
    row_id: str  # which image: the same image is asked again in a later pass


@dataclass
class ScenarioLog:
    started: float = field(default_factory=time.time)
    served: list[Served] = field(default_factory=list)
    phase: str = ""
    sent: int = 0
    failed: int = 0
    worker: dict[str, float] = field(default_factory=dict)
    adapters: AdapterList | None = None

    def accuracy(self, events: Sequence[Served]) -> tuple[float, int]:
        return (sum(e.correct for e in events) / len(events) if events else 0.0), len(events)

    def in_phase(self, phase: str) -> list[Served]:
        return [e for e in self.served if e.phase == phase]


def ensure_data(settings: StackSettings) -> None:
    """Write the clean and the chosen shift's built-in streams if they are not there yet."""
    from adapter.digits.dataset import stream_name, write_stream

    data = settings.home / "data"
    for shift, severity in (("clean", 0), (settings.demo_shift, settings.demo_severity)):
        if not (data / stream_name(shift, severity) / "eval.jsonl").exists():
            write_stream(data, shift, severity, seed=0)


def phases(settings: StackSettings) -> list[Phase]:
    """Clean held-out digits, then the drifted adaptation stream, cycled over (TTRV adapts on the test
    stream itself, about twice over)."""
    from adapter.digits.dataset import stream_name

    ensure_data(settings)
    data = settings.home / "data"
    name = stream_name(settings.demo_shift, settings.demo_severity)
    clean = list(read_rows(data / "clean" / "eval.jsonl"))[: settings.demo_clean_requests]
    adapt = list(read_rows(data / name / "adapt.jsonl"))
    drifted = [adapt[i % len(adapt)] for i in range(settings.demo_drifted_requests)]
    return [Phase("clean", clean), Phase(name, drifted)]


def write_probe(settings: StackSettings, out: Path) -> Path | None:
    """The worker's probe file: the first `demo_probe_images` labeled images of the shifted evaluation
    split, as an operator would label a small sample once drift shows. The labels never train anything;
    they let the gate refuse a candidate that answers the new domain worse. The stream never shows these
    images, and the final held-out evaluation skips them."""
    if settings.demo_probe_images <= 0:
        return None
    ensure_data(settings)
    chosen = list(read_rows(shifted_eval(settings)))[: settings.demo_probe_images]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(row.model_dump_json() + "\n" for row in chosen))
    return out


def shifted_eval(settings: StackSettings) -> Path:
    from adapter.digits.dataset import stream_name

    name: str = stream_name(settings.demo_shift, settings.demo_severity)
    return settings.home / "data" / name / "eval.jsonl"


def worker_snapshot(text: str) -> dict[str, float]:
    """The worker's metrics the live view shows, keyed `name` or `name{label}`.

    >>> worker_snapshot('ttrv_rollbacks_total 1.0\\nttrv_drift_score{signal="answers"} 0.25\\n')
    {'ttrv_rollbacks_total': 1.0, 'ttrv_drift_score{answers}': 0.25}
    """
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.startswith("ttrv_") or sample.name.endswith(("_created", "_bucket")):
                continue
            labels = ",".join(sample.labels.values())
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = float(sample.value)
    return out


def live_view(log: ScenarioLog, total: int) -> Group:
    recent = log.served[-100:]
    acc, n = log.accuracy(recent)
    w = log.worker
    current = log.adapters.current if log.adapters else 0
    table = Table(show_header=False, title="ttrv demo (live)", title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("elapsed", f"{time.time() - log.started:.0f} s, phase [cyan]{log.phase}[/cyan]")
    table.add_row("requests", f"{log.sent} sent of {total}, {len(log.served)} answered")
    table.add_row("served accuracy", f"{acc:.1%} over the last {n} answers")
    table.add_row("serving", f"v{current}" if current else "base model (v0)")
    table.add_row(
        "rounds",
        f"{w.get('ttrv_adaptation_rounds_total{promoted}', 0):.0f} promoted, "
        f"{w.get('ttrv_adaptation_rounds_total{rejected}', 0):.0f} rejected, "
        f"{w.get('ttrv_adaptation_rounds_total{no_signal}', 0):.0f} without signal; "
        f"{w.get('ttrv_rollbacks_total', 0):.0f} rollbacks",
    )
    drift = ", ".join(
        f"{s} {w[f'ttrv_drift_score{{{s}}}']:.2f}"
        for s in ("answers", "inputs", "agreement")
        if f"ttrv_drift_score{{{s}}}" in w
    )
    table.add_row("drift", drift or "(reference window filling)")
    per_version = Table("version", "served", "accuracy", title="served accuracy per version")
    for version in sorted({e.version for e in log.served}):
        v_acc, v_n = log.accuracy([e for e in log.served if e.version == version])
        per_version.add_row(f"v{version}", str(v_n), f"{v_acc:.1%}")
    return Group(table, per_version)


async def _watch(stack: LocalStack, log: ScenarioLog, client: AsyncTTRVClient) -> None:
    async with httpx.AsyncClient(timeout=5.0) as http:
        while True:
            try:
                log.worker = worker_snapshot((await http.get(stack.worker_metrics)).text)
                log.adapters = await client.adapters()
            except Exception:  # a missed refresh of the live view is harmless
                pass
            await asyncio.sleep(2.0)


async def run_scenario(stack: LocalStack, settings: StackSettings, live: Live) -> ScenarioLog:
    """Replay every phase in turn; the live view is refreshed while it runs."""
    log = ScenarioLog()
    plan = phases(settings)
    total = sum(len(p.rows) for p in plan)
    async with AsyncTTRVClient(stack.api, timeout_s=120.0) as client:
        watcher = asyncio.create_task(_watch(stack, log, client))
        refresher = asyncio.create_task(_refresh(live, log, total))
        try:
            for number, phase in enumerate(plan):
                log.phase = phase.name

                def record(row: Row, reply: Answer, phase: str = phase.name) -> None:
                    if row.answer is not None:
                        correct = is_correct(reply.answer, row.answer)
                        log.served.append(
                            Served(time.time() - log.started, phase, reply.adapter_version, correct, row.id)
                        )
                    log.sent += 1

                report = await replay_async(
                    phase.rows, client, rate=settings.demo_rate, concurrency=4,
                    feedback_share=settings.demo_feedback_share, seed=settings.demo_seed * 100 + number,
                    show_progress=False, on_answer=record,
                )  # fmt: skip
                log.failed += sum(report.failed.values())
            log.adapters = await client.adapters()
        finally:
            for task in (watcher, refresher):
                task.cancel()
            await asyncio.gather(watcher, refresher, return_exceptions=True)
    live.update(live_view(log, total))
    return log


async def _refresh(live: Live, log: ScenarioLog, total: int) -> None:
    while True:
        live.update(live_view(log, total))
        await asyncio.sleep(1.0)
