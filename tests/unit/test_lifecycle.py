"""The adapter lifecycle on fakeredis and a fake engine: registry, promotion and rollback through the router,
labeled comparisons, automatic rollback, retention. The real thing runs in
tests/integration/test_lifecycle_on_real_stack.py."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import fakeredis
import pytest

from adapter.labeled import recent_feedback
from adapter.lifecycle import Lifecycle
from adapter.metrics import WorkerMetrics
from adapter.settings import WorkerSettings
from core import keys
from core.registry import Registry, UnknownVersionError, VersionPrunedError
from core.routing import AdapterRouter
from tests.unit.fakes import FakeEngine, png


class AnswersByModel(FakeEngine):
    """A fake engine whose greedy answer depends only on the adapter name asked."""

    def __init__(self, answers: dict[str, str]):
        super().__init__(loaded={"base"})
        self.answers = answers

    async def complete(
        self, model: str, image: bytes, mime: str, question: str, **options: object
    ) -> list[str]:
        await super().complete(model, image, mime, question, **options)
        return [self.answers.get(model, "0")]


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def registered(redis: fakeredis.FakeAsyncRedis, tmp: Path, *versions: int) -> Registry:
    registry = Registry(redis)
    for v in versions:
        (tmp / f"v{v}").mkdir(parents=True, exist_ok=True)
        await registry.register(v, str(tmp / f"v{v}"), {"parent": v - 1})
    return registry


def test_promotion_loads_checks_then_moves_the_pointer_and_an_older_version_is_a_rollback(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        engine = AnswersByModel({})
        router = AdapterRouter(redis, engine, "base", poll_s=1.0)  # type: ignore[arg-type]
        registry = await registered(redis, tmp_path, 1, 2)
        await router.promote(1, reason="passed the gate")
        assert engine.calls[-1]["model"] == "ttrv-v1", "the new name answered once before the pointer moved"
        listing = await router.promote(2, reason="passed the gate")
        assert listing.current == 2
        assert router.route.name == "ttrv-v2"
        listing = await router.promote(1, reason="admin")
        assert [m.kind for m in listing.history] == ["promote", "promote", "rollback"]
        assert (await registry.get(2))["status"] == "rolled_back"  # type: ignore[index]
        assert (await registry.get(1))["status"] == "promoted"  # type: ignore[index]
        assert await registry.predecessor(2) == 1
        await router.promote(0)
        assert router.route.version == 0
        assert router.route.name == "base"
        with pytest.raises(UnknownVersionError, match="no adapter version 9"):
            await router.promote(9)
        await registry.update(2, pruned=True)
        with pytest.raises(VersionPrunedError, match="deleted by retention"):
            await router.promote(2)

    run(scenario())


def test_reconcile_loads_the_current_adapter_again_after_an_engine_restart(tmp_path: Path) -> None:
    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        engine = AnswersByModel({})
        router = AdapterRouter(redis, engine, "base", 1.0)  # type: ignore[arg-type]
        await registered(redis, tmp_path, 1)
        await router.promote(1)
        engine.loaded = {"base"}  # what a vLLM restart leaves
        await router.reconcile()
        assert "ttrv-v1" in engine.loaded
        assert router.reloads == 1
        await router.reconcile()
        assert router.reloads == 1, "nothing to do when it is loaded"

    run(scenario())


async def feedback(redis: fakeredis.FakeAsyncRedis, request_id: str, version: int, correct: bool) -> None:
    image = png(seed=len(request_id))
    key = keys.image(hashlib.sha256(image).hexdigest())
    await redis.set(key, image)
    fields = {
        "id": request_id, "label": "7", "answer": "7" if correct else "1", "adapter_version": str(version),
        "correct": "1" if correct else "0", "ts": "0", "image": key, "question": "Which digit?",
        "options": "",
    }  # fmt: skip
    await redis.xadd(keys.FEEDBACK, fields)


def settings(tmp: Path, **extra: object) -> WorkerSettings:
    return WorkerSettings(adapter_dir=tmp, rollback_check_s=0.0, swap_grace_s=0.0, **extra)  # type: ignore[arg-type]


def test_a_version_that_loses_on_feedback_is_rolled_back_to_its_predecessor(tmp_path: Path) -> None:
    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        engine = AnswersByModel({"ttrv-v1": "7", "ttrv-v2": "1"})  # v1 is right, v2 wrong, on every image
        metrics = WorkerMetrics()
        life = Lifecycle(settings(tmp_path, rollback_min_labels=10), redis, engine, metrics)  # type: ignore[arg-type]
        await registered(redis, tmp_path, 1, 2)
        await life.observe()
        await life.router.promote(1)
        await life.router.promote(2)
        for i in range(9):
            await feedback(redis, f"r{i}", 2, correct=False)
        assert await life.check_rollback() is None, "too few labels to judge"
        await feedback(redis, "r9", 2, correct=False)
        assert await life.check_rollback() == 1
        entry = await life.registry.get(2)
        assert entry is not None
        assert entry["status"] == "rolled_back"
        assert "feedback accuracy 0.0% on 10 labeled answers, v1 gets 100.0%" in entry["rollback_reason"]
        await life.observe()
        assert metrics.rollbacks._value.get() == 1  # counted from the history, once
        assert metrics.feedback_accuracy.labels("2")._value.get() == 0.0
        await life.observe()
        assert metrics.rollbacks._value.get() == 1
        await life.aclose()

    run(scenario())


def test_a_version_that_does_as_well_is_kept(tmp_path: Path) -> None:
    async def scenario() -> None:
        redis = fakeredis.FakeAsyncRedis()
        engine = AnswersByModel({"ttrv-v1": "1", "ttrv-v2": "7"})
        life = Lifecycle(settings(tmp_path, rollback_min_labels=5), redis, engine, WorkerMetrics())  # type: ignore[arg-type]
        await registered(redis, tmp_path, 1, 2)
        await life.router.promote(1)
        await life.router.promote(2)
        for i in range(6):
            await feedback(redis, f"r{i}", 2, correct=True)
        engine.loaded.discard("ttrv-v1")  # unloaded after its grace period
        assert await life.check_rollback() is None
        assert await life.registry.current() == 2
        assert "ttrv-v1" not in engine.loaded, "the predecessor the check loaded is unloaded after it"
        await life.aclose()

    run(scenario())


def test_the_gate_compares_probe_and_feedback_accuracy_on_the_same_items(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(png())
    probe = tmp_path / "probe.jsonl"
    probe.write_text(
        "".join(
            json.dumps({"id": i, "prompt": "Which digit?", "image_path": "a.png", "answer": "7"}) + "\n"
            for i in range(4)
        )
    )

    async def scenario() -> tuple[dict[str, tuple[float, float]], dict[str, tuple[float, float]]]:
        redis = fakeredis.FakeAsyncRedis()
        engine = AnswersByModel({"ttrv-v3": "7", "base": "1"})
        engine.loaded.add("ttrv-v3")
        life = Lifecycle(
            settings(tmp_path, probe_path=probe, gate_min_labels=3), redis, engine, WorkerMetrics()
        )  # type: ignore[arg-type]
        for i in range(3):
            await feedback(redis, f"f{i}", 0, correct=False)
        assert len(await recent_feedback(redis, 100)) == 3
        return await life.gate_accuracy(3, 0)

    checks, floors = run(scenario())
    assert checks == {"probe": (1.0, 0.0), "feedback": (1.0, 0.0)}
    assert floors == {"probe": (1.0, 0.0)}


def test_retention_deletes_only_folders_nothing_can_read(tmp_path: Path) -> None:
    async def scenario() -> list[int]:
        redis = fakeredis.FakeAsyncRedis()
        engine = AnswersByModel({})
        life = Lifecycle(
            settings(tmp_path, retention_promoted=1, retention_rejected=0), redis, engine, WorkerMetrics()
        )  # type: ignore[arg-type]
        registry = await registered(redis, tmp_path, 1, 2, 3, 4)
        await life.router.promote(1)
        await life.router.promote(2)
        await registry.update(3, status="rejected")
        await life.router.promote(4)
        engine.loaded.discard("ttrv-v1")
        engine.loaded.discard("ttrv-v2")
        engine.loaded.add("ttrv-v3")  # still loaded (say, gated a moment ago): must be kept
        return await life.prune()

    assert run(scenario()) == [1]
    assert not (tmp_path / "v1").exists()
    assert (tmp_path / "v2").exists(), "the current version's predecessor is a rollback target"
    assert (tmp_path / "v3").exists()
    assert (tmp_path / "v4").exists()
