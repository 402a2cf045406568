"""`ttrv worker`: adapt the served model to the live stream, one round at a time.

Loop: poll the request stream; when enough new records have arrived (or enough time has passed with at
least one), run a round: sample N answers per record from the serving vLLM with the round's starting
adapter (low priority), score them with the TTRV reward, update the LoRA with GRPO, save the result as a new
immutable candidate version, and gate it: label-free collapse guards on records held back from training,
and accuracy on the probe file and delayed feedback where labels exist. A candidate that passes is swapped
in (`adapter/lifecycle.py`); one that fails is kept, rejected, for inspection. Only then are the round's
records acknowledged: a crash before that leaves them pending, and they come back.

The training line: a round trains from the current version, unless an earlier candidate was kept for
training (`GateDecision.keep_training`: nothing harmful, no worse than the base model on the probe, but not
yet far enough above it to serve); then it trains on from the latest such candidate, which stays loaded in
vLLM to sample from. A candidate thrown away leaves the line where it was: the next round starts again from
the same version, on new records. A new current version (promotion, rollback, an admin move) or a restart
of the worker starts the line again from the current version. The gate always compares with the current,
served version.

Between rounds the worker compares the current version with its predecessor on labels (and rolls back if
it lost), prunes old version folders, and updates the drift and accuracy metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sys
import time
from pathlib import Path
from typing import cast

import redis.asyncio as aioredis

from adapter.consumer import StreamConsumer
from adapter.drift import DriftMonitor, image_features
from adapter.gate import GateConfig, GateDecision, SliceStats, decide, slice_stats
from adapter.lifecycle import Lifecycle
from adapter.lora import LoraSpec, TargetsError, check_model_targets
from adapter.metrics import WorkerMetrics
from adapter.policy import Policy, load_image
from adapter.rollouts import VllmRollouts
from adapter.round import Rollout, RoundConfig, RoundStats, build_groups, train_round
from adapter.settings import WorkerSettings
from adapter.versions import next_version, record_decision, save_version
from core import keys
from core.answers import load_extractor, render_question
from core.engine import EngineClient
from core.logs import configure_logging
from core.records import RequestRecord

log = logging.getLogger("ttrv.worker")


def build_worker(
    settings: WorkerSettings,
    metrics: WorkerMetrics | None = None,
    redis: aioredis.Redis | None = None,
    engine: EngineClient | None = None,
) -> Worker:
    """The worker and its clients; tests pass a fake `redis` and `engine`, production builds real ones."""
    if redis is None:
        # A blocking pool: a round's concurrent rollouts wait for a connection instead of failing.
        pool = aioredis.BlockingConnectionPool.from_url(settings.redis_url, max_connections=32, timeout=30)
        redis = aioredis.Redis(connection_pool=pool)
    if engine is None:
        engine = EngineClient(settings.vllm_url, timeout_s=300.0)
    return Worker(settings, redis, engine, metrics or WorkerMetrics())


class Worker:
    """One adaptation worker; `build_worker` makes one with its Redis and vLLM clients."""

    def __init__(
        self, settings: WorkerSettings, redis: aioredis.Redis, engine: EngineClient, metrics: WorkerMetrics
    ):
        self.s = settings
        self.metrics = metrics
        self.redis = redis
        self.rollout_slots = asyncio.Semaphore(32)  # rollouts in flight at once (vLLM queues the rest anyway)
        self.consumer = StreamConsumer(
            self.redis, settings.consumer_name,
            max_deliveries=settings.max_deliveries, claim_idle_ms=settings.claim_idle_ms,
        )  # fmt: skip
        self.engine = engine
        self.lifecycle = Lifecycle(settings, self.redis, self.engine, self.metrics)
        self.router = self.lifecycle.router
        self.drift = DriftMonitor(
            window=settings.drift_window, min_current=max(1, settings.drift_window // 4)
        )
        self.spec = lora_spec(settings)
        self.round_cfg = RoundConfig(
            reward=settings.reward, alpha=settings.alpha, keep=settings.keep, lr=settings.lr,
            epochs=settings.epochs, kl_coef=settings.kl_coef, extractor=settings.answer_extractor,
        )  # fmt: skip
        self.extract = load_extractor(settings.answer_extractor)
        self.gate_cfg = GateConfig(
            tolerance=settings.accuracy_tolerance, min_gain=settings.min_gain_over_base
        )
        self.rng = random.Random(settings.seed)
        self.policy: Policy | None = None
        self.policy_version = -1
        # (candidate, current version it was judged against): the next round trains on from the candidate.
        self.held: tuple[int, int] | None = None
        self.rollouts: VllmRollouts | None = None
        self.last_round = time.monotonic()

    def _load_policy(self, version: int, path: str | None) -> Policy:
        """The training copy, starting from `version` at `path` (0: a fresh LoRA on the base model)."""
        if self.policy is None or self.policy_version != version:
            adapter = Path(path) if version and path else None
            self.policy = Policy(self.s.model_folder, self.spec, adapter=adapter, seed=self.s.seed)
            self.policy_version = version
            banned = self.policy.suppressed
            if self.rollouts is None:
                self.rollouts = VllmRollouts(self.s.vllm_url, self.s.rollout_priority, banned)
        return self.policy

    async def run_forever(self) -> None:
        self.s.adapters_folder.mkdir(parents=True, exist_ok=True)
        await self.consumer.start()
        if saved := await self.redis.get(keys.DRIFT_STATE):  # the reference survives restarts
            with contextlib.suppress(ValueError):
                self.drift = DriftMonitor.from_json(cast(bytes, saved).decode())
        while True:
            try:
                await self.step(block_ms=1000)
            except Exception:
                # vLLM or Redis down mid-round, a version gone: the records stay pending and the round is
                # tried again; the worker never dies of what a restart of another process would fix.
                log.exception("round failed; its records stay pending and are retried")
                self.policy_version = -1
                await asyncio.sleep(5.0)
            await self.between_rounds()

    async def between_rounds(self) -> None:
        """Rollback check, retention and label metrics; a failure here is logged, never fatal."""
        try:
            if await self.lifecycle.check_rollback() is not None:
                self.policy_version = -1  # train the next round from the version rolled back to
                self.held = None
            await self.lifecycle.observe()
        except Exception:
            log.exception("lifecycle check failed; retrying on the next poll")

    async def step(self, block_ms: int) -> RoundStats | None:
        """One poll; a round if it is due. Returns the round's stats when one ran."""
        await self._observe_drift(await self.consumer.poll(block_ms=block_ms))
        backlog = await self.consumer.backlog()
        self.metrics.queue_length.set(backlog["queue_length"])
        self.metrics.queue_pending.set(backlog["pending"])
        fresh = self.consumer.fresh()
        due = len(fresh) >= self.s.round_min_records or (
            fresh and time.monotonic() - self.last_round >= self.s.round_interval_s
        )
        if not due or await self.redis.get(keys.ADAPTATION_PAUSED):
            return None
        return await self.run_round(fresh[: self.s.round_max_records])

    async def _rollout(self, policy: Policy, model: str, record: RequestRecord) -> Rollout | None:
        async with self.rollout_slots:
            return await self._rollout_one(policy, model, record)

    async def _rollout_one(self, policy: Policy, model: str, record: RequestRecord) -> Rollout | None:
        assert self.rollouts is not None
        image = cast(bytes | None, await self.redis.get(record.image_key))
        if image is None:
            log.warning("image of %s expired before adaptation; record skipped", record.request_id)
            return None
        question = render_question(record.question, record.options)
        sampled = await self.rollouts.sample(
            model, image, record.mime, question, self.s.samples, self.s.temperature, self.s.max_tokens
        )
        prompt = policy.prompt(load_image(image), question)
        if sampled.prompt_token_ids != prompt.ids.tolist():
            log.error("vLLM and the trainer tokenized %s differently; record skipped", record.request_id)
            return None
        self.metrics.rollouts.inc(len(sampled.completions))
        return Rollout(prompt, sampled.completions, sampled.texts, record.options)

    async def run_round(self, fresh: list[RequestRecord]) -> RoundStats:
        """Sample, train, save a candidate, gate it, promote or reject it; then acknowledge the records."""
        started = time.monotonic()
        self.last_round = started
        route = await self.router.refresh()  # the registry's current version and its folder
        current = route.version
        parent, parent_name, parent_path = await self._training_start(current, route.name, route.path)
        policy = self._load_policy(parent, parent_path)
        held_out, train = self._split(fresh)
        replayed = self._replayed(len(train))
        # The gate's reference answers come from the served version; training samples from the policy's own.
        results = await asyncio.gather(
            *(self._rollout(policy, route.name, r) for r in held_out),
            *(self._rollout(policy, parent_name, r) for r in train + replayed),
        )
        gate_now = [r for r in results[: len(held_out)] if r is not None]
        rollouts = [r for r in results[len(held_out) :] if r is not None]
        timings = {"rollouts_s": time.monotonic() - started}
        groups, stats = build_groups(rollouts, self.round_cfg, self.rng)
        keepalive = asyncio.create_task(self._keepalive())
        try:
            stats = await asyncio.to_thread(train_round, policy, groups, self.round_cfg, stats, self.rng)
        finally:
            keepalive.cancel()
        timings["training_s"] = time.monotonic() - started - sum(timings.values())
        self._observe(stats)
        if stats.steps == 0:
            # Nothing to learn from (every group unanimous): the records are used, no version is made.
            await self.consumer.commit(fresh)
            self.metrics.rounds.labels("no_signal").inc()
            return stats
        version = await next_version(self.redis)
        metadata: dict[str, object] = {
            "parent": parent,
            "records": len(train),
            "held_out": len(held_out),
            "replayed": len(replayed),
            "record_ids": [r.request_id for r in train],
            "steps": stats.steps,
            "metrics": {k: v for k, v in stats.as_dict().items() if k not in ("records", "steps")},
            "settings": {"reward": self.s.reward, "lr": self.s.lr, "rank": self.s.lora_rank},
        }
        path = await asyncio.to_thread(save_version, policy, self.s.adapters_folder, version, metadata)
        await self.lifecycle.registry.register(version, str(path), metadata)
        decision = await self.gate(version, path, held_out, gate_now, current)
        timings["gate_s"] = time.monotonic() - started - sum(timings.values())
        if not decision.passed and decision.keep_training:
            decision.reasons.append("the next round trains on from it")
        await record_decision(self.redis, version, decision)
        await self._settle(version, current, parent, decision)
        await self.consumer.commit(fresh)
        await self.lifecycle.prune(keep={self.held[0]} if self.held else set())
        took = time.monotonic() - started
        timings["swap_s"] = took - sum(timings.values())
        self.metrics.round_duration.observe(took)
        log.info(
            "round done: v%d from v%d, %d records (+%d replayed, %d held out), %d steps, %.1f s (%s)",
            version, parent, len(train), len(replayed), len(held_out), stats.steps, took,
            ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in timings.items()),
        )  # fmt: skip
        return stats

    async def _settle(self, version: int, current: int, parent: int, decision: GateDecision) -> None:
        """Serve the candidate, keep it to train on from, or throw it away; the training line follows."""
        line = self.held
        if decision.passed:
            self.policy_version = version  # the in-memory policy is now exactly this version
            self.held = None  # the line goes on from the current version, which this now is
            await self.lifecycle.promote(version, current, parent)
            self.metrics.rounds.labels("promoted").inc()
        elif decision.keep_training:
            self.policy_version = version  # ... and stays loaded in vLLM, to sample the next round from
            self.held = (version, current)
            self.metrics.rounds.labels("rejected").inc()
            log.warning("candidate v%d not served: %s", version, "; ".join(decision.reasons))
        else:
            self.policy_version = -1  # the next round starts again from where this one started
            await self.engine.unload_adapter(self.lifecycle.name(version))
            self.metrics.rounds.labels("rejected").inc()
            log.warning("candidate v%d rejected: %s", version, "; ".join(decision.reasons))
        if line is not None and line != self.held:  # the line moved past the candidate it trained from
            await self.engine.unload_adapter(self.lifecycle.name(line[0]))

    async def _training_start(
        self, current: int, current_name: str, current_path: str | None
    ) -> tuple[int, str, str | None]:
        """The version this round trains from, its vLLM name and folder: the held candidate if the line
        is still measured against the current version (and its folder is there), else the current one."""
        if self.held is not None and self.held[1] == current:
            entry = await self.lifecycle.registry.get(self.held[0])
            if entry is not None and not entry.get("pruned"):
                await self.lifecycle.ensure_loaded(self.held[0])  # a rollback check may have evicted it
                return self.held[0], self.lifecycle.name(self.held[0]), str(entry["path"])
        if self.held is not None:  # the current version moved (rollback, admin): the line starts again
            await self.engine.unload_adapter(self.lifecycle.name(self.held[0]))
            self.held = None
        return current, current_name, current_path

    def _split(self, fresh: list[RequestRecord]) -> tuple[list[RequestRecord], list[RequestRecord]]:
        """Hold back a share of the new records for the gate: they are never trained on in this round."""
        n = int(len(fresh) * self.s.gate_share)
        if n < self.s.gate_min_records:
            return [], fresh
        chosen = set(self.rng.sample(range(len(fresh)), n))
        return [r for i, r in enumerate(fresh) if i in chosen], [
            r for i, r in enumerate(fresh) if i not in chosen
        ]

    async def gate(
        self,
        version: int,
        path: Path,
        held_out: list[RequestRecord],
        current: list[Rollout],
        current_version: int | None = None,
    ) -> GateDecision:
        """Load the candidate under its own name (not routed to), sample the held-back records with it and
        compare with the current version's answers on them; then the labeled checks, where labels exist."""
        assert self.policy is not None
        await self.lifecycle.load_candidate(version, path)
        if current_version is None:
            current_version = await self.lifecycle.registry.current()
        await self.lifecycle.ensure_loaded(current_version)
        accuracy, floors = await self.lifecycle.gate_accuracy(version, current_version)
        name = keys.adapter_name(version, self.s.base_model_name)
        results = await asyncio.gather(*(self._rollout(self.policy, name, r) for r in held_out))
        candidate = [r for r in results if r is not None]
        if not current:
            return decide(self._slice([]), self._slice([]), self.gate_cfg, accuracy, floors)
        return decide(self._slice(candidate), self._slice(current), self.gate_cfg, accuracy, floors)

    def _slice(self, rollouts: list[Rollout]) -> SliceStats:
        """The gate's view of sampled answers, read with the task's extractor."""
        answers = [[self.extract(t, r.options) for t in r.texts] for r in rollouts]
        return slice_stats(answers, [[len(c) for c in r.completions] for r in rollouts])

    def _replayed(self, n_fresh: int) -> list[RequestRecord]:
        buffer = self.consumer.replay_buffer()
        k = min(len(buffer), int(n_fresh * self.s.replay_share))
        return self.rng.sample(buffer, k)

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(max(1.0, self.s.claim_idle_ms / 3000))
            with contextlib.suppress(Exception):
                await self.consumer.keepalive()

    def _observe(self, stats: RoundStats) -> None:
        self.metrics.reward_mean.set(stats.reward_mean)
        self.metrics.agreement.set(stats.agreement_mean)
        self.metrics.entropy.set(stats.entropy_ratio_mean)
        self.drift.observe_agreement(stats.agreement_mean)
        self._publish_drift()

    async def _observe_drift(self, records: list[RequestRecord]) -> None:
        """Feed newly delivered records (their served answer and image statistics) to the drift monitor."""
        if not records:
            return
        images = cast(list[bytes | None], await self.redis.mget([r.image_key for r in records]))
        for record, image in zip(records, images, strict=True):
            features = None
            if image is not None:
                with contextlib.suppress(ValueError):
                    features = image_features(image)
            self.drift.observe(record.served_answer, features)
        self._publish_drift()
        await self.redis.set(keys.DRIFT_STATE, self.drift.to_json())

    def _publish_drift(self) -> None:
        for signal, score in self.drift.scores().items():
            self.metrics.drift.labels(signal).set(score)

    async def aclose(self) -> None:
        await self.lifecycle.aclose()
        if self.rollouts is not None:
            await self.rollouts.aclose()
        await self.engine.aclose()
        await self.redis.aclose(close_connection_pool=True)


def lora_spec(settings: WorkerSettings) -> LoraSpec:
    return LoraSpec(
        rank=settings.lora_rank, alpha=2.0 * settings.lora_rank, vision=settings.lora_vision,
        targets=tuple(settings.lora_targets) if settings.lora_targets else None,
    )  # fmt: skip


def run_worker(settings: WorkerSettings) -> None:
    configure_logging(settings.log_json)
    try:  # before anything runs: a target that matches nothing would silently leave a part un-adapted
        check_model_targets(settings.model_folder, lora_spec(settings))
    except TargetsError as err:
        print(f"ttrv worker: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    worker = build_worker(settings)
    worker.metrics.serve(settings.metrics_port)

    async def main() -> None:
        try:
            await worker.run_forever()
        finally:
            await worker.aclose()

    asyncio.run(main())
