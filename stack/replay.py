"""Replay a stream of TTRV rows through the gateway, as live traffic would arrive, and report what was served.

Rows are sent with bounded concurrency and paced at a rate, so a replay can stand in for an application
(drive adaptation, test a deployment under load). Labeled rows give served accuracy per adapter version from
the replies themselves, which is what an application saw, not what an offline evaluation would say. A random
share of answered rows can also send their label to `/v1/feedback`, as delayed ground truth would arrive.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sized
from typing import Any

from pydantic import BaseModel, Field
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from clients.errors import NO_REPLY, TTRVError
from clients.models import Answer
from clients.sdk import AsyncTTRVClient
from core.answers import is_correct
from core.rows import Row

ClientSource = AsyncTTRVClient | Callable[[], AsyncTTRVClient]
AnswerHook = Callable[[Row, Answer], None]  # called with each answered row and its reply


class VersionAccuracy(BaseModel):
    """Labeled rows answered by one adapter version, and how many of them were right."""

    n: int = 0
    correct: int = 0

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0


class ReplayReport(BaseModel):
    """Counts of one replay. `failed` is keyed by HTTP status (0: no reply); `skipped` rows were never sent
    because their image could not be read; `errors` keeps the first message seen for each failed status."""

    sent: int = 0
    answered: int = 0
    failed: dict[int, int] = Field(default_factory=dict)
    skipped: int = 0
    feedback_sent: int = 0
    feedback_failed: int = 0
    accuracy: dict[int, VersionAccuracy] = Field(default_factory=dict)
    errors: dict[int, str] = Field(default_factory=dict)
    elapsed_s: float = 0.0

    def record_failure(self, error: TTRVError) -> None:
        self.failed[error.status] = self.failed.get(error.status, 0) + 1
        self.errors.setdefault(error.status, error.message)

    def record_answer(self, version: int, served: str, label: str | None) -> None:
        self.answered += 1
        if label is not None:
            tally = self.accuracy.setdefault(version, VersionAccuracy())
            tally.n += 1
            tally.correct += is_correct(served, label)


class Pacer:
    """Spaces starts at least `1 / rate` seconds apart (rate 0: no pacing). A start delayed by a full
    concurrency window does not make the next ones burst to catch up."""

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate < 0:
            raise ValueError(f"rate must be >= 0 requests/s (0: as fast as possible), not {rate}")
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next: float | None = None

    async def wait(self) -> None:
        if not self._interval:
            return
        now = self._clock()
        if self._next is not None and now < self._next:
            await self._sleep(self._next - now)
            now = self._next
        self._next = now + self._interval


async def replay_async(
    rows: Iterable[Row],
    client: ClientSource,
    *,
    rate: float = 0.0,
    concurrency: int = 4,
    limit: int | None = None,
    feedback_share: float = 0.0,
    seed: int = 0,
    show_progress: bool = True,
    console: Console | None = None,
    on_answer: AnswerHook | None = None,
) -> ReplayReport:
    """Send `rows` (at most `limit`) to `POST /v1/answer` and count what came back.

    `client` is an `AsyncTTRVClient` (left open) or a factory of one (closed at the end). Failed requests
    (after the client's own retries) are counted, not raised; `feedback_share` of the answered labeled rows,
    drawn with `seed`, send their label to `/v1/feedback`. `on_answer` sees every reply as it arrives.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    if not 0.0 <= feedback_share <= 1.0:
        raise ValueError(f"feedback_share must be within 0..1, not {feedback_share}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must not be negative, not {limit}")
    options: dict[str, Any] = {
        "pacer": Pacer(rate),
        "concurrency": concurrency,
        "limit": limit,
        "feedback_share": feedback_share,
        "seed": seed,
        "show_progress": show_progress,
        "console": console,
        "on_answer": on_answer,
    }
    if isinstance(client, AsyncTTRVClient):
        return await _replay(rows, client, **options)
    async with client() as owned:
        return await _replay(rows, owned, **options)


def replay(
    rows: Iterable[Row],
    client: ClientSource,
    *,
    rate: float = 0.0,
    concurrency: int = 4,
    limit: int | None = None,
    feedback_share: float = 0.0,
    seed: int = 0,
    show_progress: bool = True,
    console: Console | None = None,
) -> ReplayReport:
    """`replay_async` run to completion in a new event loop (for scripts and the CLI)."""
    return asyncio.run(
        replay_async(
            rows,
            client,
            rate=rate,
            concurrency=concurrency,
            limit=limit,
            feedback_share=feedback_share,
            seed=seed,
            show_progress=show_progress,
            console=console,
        )
    )


async def _replay(
    rows: Iterable[Row],
    client: AsyncTTRVClient,
    *,
    pacer: Pacer,
    concurrency: int,
    limit: int | None,
    feedback_share: float,
    seed: int,
    show_progress: bool,
    console: Console | None,
    on_answer: AnswerHook | None,
) -> ReplayReport:
    report = ReplayReport()
    rng = random.Random(seed)
    slots = asyncio.Semaphore(concurrency)
    total = len(rows) if isinstance(rows, Sized) else None
    if limit is not None:
        total = limit if total is None else min(total, limit)
    started = time.monotonic()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, disable=not show_progress) as progress:
        bar = progress.add_task("replay", total=total)

        async def one(row: Row, give_feedback: bool) -> None:
            try:
                await _replay_row(client, row, give_feedback, report, on_answer)
            finally:
                slots.release()
                failed = sum(report.failed.values())
                progress.update(bar, advance=1, description=f"answered {report.answered} failed {failed}")

        running: set[asyncio.Task[None]] = set()
        try:
            for row in itertools.islice(rows, limit):
                give_feedback = rng.random() < feedback_share  # drawn in row order: same rows for a seed
                await slots.acquire()
                await pacer.wait()
                task = asyncio.create_task(one(row, give_feedback))
                running.add(task)
                task.add_done_callback(running.discard)
            await asyncio.gather(*list(running))
        finally:
            leftover = list(running)
            for task in leftover:
                task.cancel()
            await asyncio.gather(*leftover, return_exceptions=True)
    report.elapsed_s = time.monotonic() - started
    return report


async def _replay_row(
    client: AsyncTTRVClient, row: Row, give_feedback: bool, report: ReplayReport, on_answer: AnswerHook | None
) -> None:
    try:
        image = row.image_path.read_bytes()
    except OSError:
        report.skipped += 1
        return
    report.sent += 1
    try:
        reply = await client.answer(image, row.prompt)
    except TTRVError as error:
        report.record_failure(error)
        return
    report.record_answer(reply.adapter_version, reply.answer, row.answer)
    if on_answer is not None:
        on_answer(row, reply)
    if give_feedback and row.answer is not None:
        try:
            await client.feedback(reply.id, row.answer)
        except TTRVError:
            report.feedback_failed += 1
        else:
            report.feedback_sent += 1


def report_table(report: ReplayReport) -> Table:
    """The report as one two-column table: counts, failures by status, then accuracy per adapter version."""
    table = Table(title="replay", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    rate = report.sent / report.elapsed_s if report.elapsed_s > 0 else 0.0
    table.add_row("sent", str(report.sent))
    table.add_row("answered", str(report.answered))
    for status, count in sorted(report.failed.items()):
        name = "no reply" if status == NO_REPLY else f"HTTP {status}"
        table.add_row(f"failed ({name})", f"[red]{count}[/red]")
    if report.skipped:
        table.add_row("skipped (image unreadable)", f"[yellow]{report.skipped}[/yellow]")
    if report.feedback_sent or report.feedback_failed:
        table.add_row("feedback sent / failed", f"{report.feedback_sent} / {report.feedback_failed}")
    table.add_row("elapsed", f"{report.elapsed_s:.1f} s ({rate:.1f} req/s)")
    for version, tally in sorted(report.accuracy.items()):
        name = "base model" if version == 0 else f"adapter v{version}"
        table.add_row(f"accuracy, {name}", f"{tally.accuracy:.1%} (n={tally.n})")
    return table
