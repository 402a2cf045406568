"""The worker's training line: which version a round trains from, after the gate served a candidate, kept it
to train on from, or threw it away.

The gate's side (which failures are harmful) is in tests/unit/test_gate.py; a whole round on the real stack
runs in tests/integration/test_worker_on_real_stack.py and in the demo."""

from __future__ import annotations

import asyncio
from pathlib import Path

import fakeredis

from adapter.gate import GateDecision
from adapter.metrics import WorkerMetrics
from adapter.settings import WorkerSettings
from adapter.worker import Worker, build_worker
from core.registry import Registry
from tests.unit.fakes import FakeEngine


def worker_on_fakes(tmp: Path) -> tuple[Worker, FakeEngine, Registry]:
    settings = WorkerSettings(adapter_dir=tmp)  # type: ignore[call-arg]
    engine = FakeEngine()
    worker = build_worker(settings, WorkerMetrics(), fakeredis.FakeAsyncRedis(), engine)  # type: ignore[arg-type]
    return worker, engine, worker.lifecycle.registry


async def register(registry: Registry, tmp: Path, version: int, status: str) -> None:
    (tmp / f"v{version}").mkdir()
    await registry.register(version, str(tmp / f"v{version}"), {"parent": version - 1})
    await registry.update(version, status=status)


def test_a_held_candidate_is_trained_on_while_the_same_version_is_served(tmp_path: Path) -> None:
    async def scenario() -> None:
        worker, engine, registry = worker_on_fakes(tmp_path)
        await register(registry, tmp_path, 1, "rejected")
        worker.held = (1, 0)
        start = await worker._training_start(0, "base", None)
        assert start == (1, "ttrv-v1", str(tmp_path / "v1"))
        assert ("ttrv-v1", str(tmp_path / "v1")) in engine.loads, "sampled from, so loaded again if evicted"

    asyncio.run(scenario())


def test_the_line_starts_again_from_the_current_version_when_that_moved(tmp_path: Path) -> None:
    async def scenario() -> None:
        worker, engine, registry = worker_on_fakes(tmp_path)
        await register(registry, tmp_path, 1, "rejected")
        engine.loaded.add("ttrv-v1")
        worker.held = (1, 0)  # judged against the base; a promotion or rollback made v2 current since
        assert await worker._training_start(2, "ttrv-v2", "/adapters/v2") == (2, "ttrv-v2", "/adapters/v2")
        assert worker.held is None
        assert engine.loads == []
        assert "ttrv-v1" not in engine.loaded, "nothing samples from it any more"

    asyncio.run(scenario())


def test_the_line_starts_again_when_the_held_folder_is_gone(tmp_path: Path) -> None:
    async def scenario() -> None:
        worker, _, registry = worker_on_fakes(tmp_path)
        await register(registry, tmp_path, 1, "rejected")
        await registry.update(1, pruned=True)
        worker.held = (1, 0)
        assert await worker._training_start(0, "base", None) == (0, "base", None)
        assert worker.held is None

    asyncio.run(scenario())


def test_retention_keeps_the_folder_the_worker_trains_from(tmp_path: Path) -> None:
    async def scenario() -> None:
        worker, _, registry = worker_on_fakes(tmp_path)
        worker.lifecycle.s = worker.lifecycle.s.model_copy(update={"retention_rejected": 0})
        for v in (1, 2):
            await register(registry, tmp_path, v, "rejected")
        assert await worker.lifecycle.prune(keep={2}) == [1]
        assert (tmp_path / "v2").exists()
        assert not (tmp_path / "v1").exists()

    asyncio.run(scenario())


KEPT = GateDecision(False, ["probe accuracy not yet 3% above the base model"], keep_training=True)
THROWN = GateDecision(False, ["probe accuracy below the base model"], keep_training=False)


def test_a_kept_candidate_extends_the_line_and_a_thrown_one_leaves_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        worker, engine, registry = worker_on_fakes(tmp_path)
        for v in (1, 2, 3):
            await register(registry, tmp_path, v, "rejected")
            engine.loaded.add(f"ttrv-v{v}")
        await worker._settle(1, 0, 0, KEPT)
        assert worker.held == (1, 0)
        await worker._settle(2, 0, 1, THROWN)
        assert worker.held == (1, 0), "a step that lost ground is undone: train from v1 again"
        assert "ttrv-v2" not in engine.loaded
        assert "ttrv-v1" in engine.loaded
        await worker._settle(3, 0, 1, KEPT)
        assert worker.held == (3, 0)
        assert "ttrv-v1" not in engine.loaded, "the line moved past v1"

    asyncio.run(scenario())


def test_serving_a_candidate_restarts_the_line_from_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        worker, engine, registry = worker_on_fakes(tmp_path)
        for v in (1, 2):
            await register(registry, tmp_path, v, "rejected")
        engine.loaded.add("ttrv-v1")
        worker.held = (1, 0)
        await worker._settle(2, 0, 1, GateDecision(True))
        assert worker.held is None
        assert await registry.current() == 2
        assert "ttrv-v1" not in engine.loaded
        assert await worker._training_start(2, "ttrv-v2", str(tmp_path / "v2")) == (
            2, "ttrv-v2", str(tmp_path / "v2"),
        )  # fmt: skip

    asyncio.run(scenario())
