"""Replay through a fake gateway: counts, accuracy per served version, feedback, concurrency, pacing."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console

from clients.sdk import AsyncTTRVClient
from clients.settings import ClientSettings
from core.rows import Row
from stack.replay import Pacer, ReplayReport, VersionAccuracy, replay, replay_async, report_table


class FakeGateway:
    """Answers from the image bytes, which spell `<answer>@<version>`, or `status:<code>` to fail."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.answers = 0
        self.feedback: list[dict[str, Any]] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if request.url.path == "/v1/feedback":
            self.feedback.append(body)
            return httpx.Response(200, json={"id": body["id"], "correct": True, "adapter_version": 0})
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.in_flight -= 1
        self.answers += 1
        spec = base64.b64decode(body["image"]).decode()
        if spec.startswith("status:"):
            status = int(spec.removeprefix("status:"))
            error = {"error": {"message": f"failed with {status}", "type": "test_error"}}
            return httpx.Response(status, json=error)
        answer, version = spec.split("@")
        reply = {
            "id": body["request_id"],
            "answer": answer,
            "text": answer,
            "adapter_version": int(version),
            "confidence": None,
            "latency_ms": 1.0,
        }
        return httpx.Response(200, json=reply)

    def client(self) -> AsyncTTRVClient:
        settings = ClientSettings(url="http://gateway.test", api_key=None, admin_token=None)
        return AsyncTTRVClient(settings=settings, max_retries=0, transport=httpx.MockTransport(self))


def rows(tmp_path: Path, *specs: tuple[str, str | None]) -> list[Row]:
    """Rows whose image spells what the fake gateway answers, and the row's label."""
    out = []
    for i, (spec, label) in enumerate(specs):
        image = tmp_path / f"{i}.png"
        image.write_text(spec)
        out.append(Row(id=f"r{i}", prompt="Which digit?", image_path=image, answer=label))
    return out


def test_counts_and_accuracy_per_served_version(tmp_path: Path) -> None:
    data = rows(
        tmp_path,
        ("7@0", "7"),  # right, base model
        ("3@0", "8"),  # wrong, base model
        ("1@2", "1"),  # right, v2
        ("B@2", " b"),  # right, v2 (case and spaces do not matter)
        ("4@2", "9"),  # wrong, v2
        ("5@2", None),  # unlabeled: answered, not in accuracy
        ("status:429", "1"),
        ("status:400", "1"),
        ("status:400", "2"),
    )
    data.append(Row(id="gone", prompt="q", image_path=tmp_path / "missing.png", answer="1"))
    gateway = FakeGateway()
    report = replay(data, gateway.client, concurrency=3, show_progress=False)
    assert (report.sent, report.answered, report.skipped) == (9, 6, 1)
    assert report.failed == {429: 1, 400: 2}
    assert report.errors == {429: "failed with 429", 400: "failed with 400"}
    assert report.accuracy == {0: VersionAccuracy(n=2, correct=1), 2: VersionAccuracy(n=3, correct=2)}
    assert report.accuracy[2].accuracy == pytest.approx(2 / 3)
    assert gateway.feedback == []


def test_limit_stops_after_that_many_rows(tmp_path: Path) -> None:
    gateway = FakeGateway()
    report = replay(rows(tmp_path, *[("1@0", "1")] * 10), gateway.client, limit=3, show_progress=False)
    assert (report.sent, gateway.answers) == (3, 3)


def test_feedback_sends_the_label_of_answered_labeled_rows(tmp_path: Path) -> None:
    gateway = FakeGateway()
    data = rows(tmp_path, ("7@0", "7"), ("3@1", "8"), ("5@1", None), ("status:400", "1"))
    report = replay(data, gateway.client, feedback_share=1.0, show_progress=False)
    assert sorted(f["label"] for f in gateway.feedback) == ["7", "8"]
    assert all(len(f["id"]) == 32 for f in gateway.feedback)  # the ids the gateway replied with
    assert (report.feedback_sent, report.feedback_failed) == (2, 0)


def test_a_share_of_feedback_is_drawn_from_the_seed(tmp_path: Path) -> None:
    data = rows(tmp_path, *[(f"{i}@0", str(i)) for i in range(200)])  # labels name the rows

    def fed_back(seed: int) -> list[str]:
        gateway = FakeGateway()
        replay(data, gateway.client, feedback_share=0.3, seed=seed, concurrency=8, show_progress=False)
        return sorted(f["label"] for f in gateway.feedback)

    first, again, other = fed_back(1), fed_back(1), fed_back(2)
    assert 30 <= len(first) <= 90
    assert first == again
    assert first != other


def test_concurrency_bounds_the_requests_in_flight(tmp_path: Path) -> None:
    gateway = FakeGateway(delay_s=0.01)
    replay(rows(tmp_path, *[("1@0", "1")] * 12), gateway.client, concurrency=3, show_progress=False)
    assert gateway.most_in_flight == 3


def test_a_given_client_is_left_open_and_a_factory_client_is_closed(tmp_path: Path) -> None:
    gateway = FakeGateway()
    made: list[AsyncTTRVClient] = []

    def factory() -> AsyncTTRVClient:
        made.append(gateway.client())
        return made[-1]

    async def run() -> tuple[ReplayReport, bool, bool]:
        mine = gateway.client()
        report = await replay_async(rows(tmp_path, ("1@0", "1")), mine, show_progress=False)
        await replay_async(rows(tmp_path, ("1@0", "1")), factory, show_progress=False)
        still_open = not mine._http.is_closed
        await mine.aclose()
        return report, still_open, made[0]._http.is_closed

    report, mine_open, factory_closed = asyncio.run(run())
    assert report.answered == 1
    assert mine_open
    assert factory_closed


def test_pacer_spaces_starts_and_does_not_burst_after_a_stall() -> None:
    now = [100.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    async def run() -> None:
        pacer = Pacer(2.0, clock=lambda: now[0], sleep=sleep)
        await pacer.wait()
        await pacer.wait()
        await pacer.wait()
        now[0] += 10.0  # a stall (all slots busy)
        await pacer.wait()
        await pacer.wait()

    asyncio.run(run())
    assert slept == [0.5, 0.5, 0.5]


def test_rate_zero_never_sleeps() -> None:
    async def sleep(seconds: float) -> None:
        raise AssertionError("rate 0 must not sleep")

    async def run() -> None:
        pacer = Pacer(0.0, sleep=sleep)
        for _ in range(5):
            await pacer.wait()

    asyncio.run(run())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"feedback_share": 1.5}, "feedback_share"),
        ({"rate": -1.0}, "rate"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replay([], FakeGateway().client, show_progress=False, **options)


def test_report_table_shows_failures_and_accuracy_per_version() -> None:
    report = ReplayReport(
        sent=5,
        answered=4,
        failed={503: 1},
        accuracy={0: VersionAccuracy(n=2, correct=1), 3: VersionAccuracy(n=2, correct=2)},
        elapsed_s=2.0,
    )
    console = Console(record=True, width=100)
    console.print(report_table(report))
    text = console.export_text()
    assert "failed (HTTP 503)" in text
    assert "accuracy, base model" in text
    assert "50.0% (n=2)" in text
    assert "accuracy, adapter v3" in text
    assert "100.0% (n=2)" in text
    assert "2.5 req/s" in text
