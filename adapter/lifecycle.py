"""The adapter lifecycle after a round: labeled gate checks, hot-swap, rollback, retention (docs/design.md).

- **Swap.** `promote` goes through `AdapterRouter.promote`, the same path as the admin route: the version
  is loaded into vLLM under its own immutable name `ttrv-vN`, asked one request, and only then does the
  pointer move (gateways follow at once by pub/sub). The old name stays loaded for `swap_grace_s`, so
  requests already in flight on it finish on the weights they started with, then it is unloaded.
- **Slots.** At most `max_loaded_adapters` names are loaded at once (current, the previous one in its grace
  period, a candidate under the gate, a predecessor being compared): before a load, the oldest name that is
  none of those is unloaded, so vLLM never evicts one silently (it must not be below this number).
- **Rollback.** Every `rollback_check_s`, the current version is compared with its predecessor on the
  same labeled items: the probe file, and the requests it served that got a label. If the predecessor is
  better by more than `accuracy_tolerance`, the pointer moves back to it (kind `rollback` in the history).
- **Retention.** A version folder is deleted only when nothing can read it any more: not current, not the
  current one's predecessor, not loaded in vLLM, and older than the newest `retention_promoted` promoted
  (or `retention_rejected` rejected) versions. Its registry entry stays, marked `pruned`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from adapter.labeled import Evaluator, LabeledItem, load_probe, recent_feedback
from adapter.metrics import WorkerMetrics
from adapter.settings import WorkerSettings
from core import keys
from core.answers import load_extractor
from core.engine import EngineClient, EngineUnavailableError
from core.records import FeedbackRecord, entries
from core.registry import Registry
from core.routing import AdapterRouter

log = logging.getLogger("ttrv.lifecycle")


def prunable(
    versions: dict[int, dict[str, Any]], protected: Iterable[int], keep_promoted: int, keep_rejected: int
) -> list[int]:
    """Versions whose folders may be deleted: beyond the newest kept of their kind, and not protected.

    Candidates are never pruned here (one may be under the gate right now), nor exported versions.

    >>> v = {1: {"status": "promoted"}, 2: {"status": "rejected"}, 3: {"status": "promoted"},
    ...      4: {"status": "rolled_back"}, 5: {"status": "rejected"}, 6: {"status": "candidate"}}
    >>> prunable(v, protected={1}, keep_promoted=1, keep_rejected=1)
    [2, 3]
    >>> v[3]["exported"] = True
    >>> prunable(v, protected={1}, keep_promoted=1, keep_rejected=1)
    [2]
    """
    served = sorted(v for v, e in versions.items() if e.get("status") in ("promoted", "rolled_back"))
    rejected = sorted(v for v, e in versions.items() if e.get("status") == "rejected")
    old = served[: max(0, len(served) - keep_promoted)] + rejected[: max(0, len(rejected) - keep_rejected)]
    keep = set(protected)
    # An exported version (`ttrv export`) is kept: someone outside the server relies on its lineage.
    return sorted(
        v for v in old if v not in keep and not versions[v].get("pruned") and not versions[v].get("exported")
    )


def clearly_worse(current: list[bool], previous: list[bool], tolerance: float, alpha: float = 0.05) -> bool:
    """Whether `current` is worse than `previous` on the same items by more than `tolerance`, and the items
    they disagree on make chance an unlikely explanation (one-sided sign test on the discordant pairs).

    A rollback moves what every client is served, so one or two flipped labels must not trigger it.

    >>> clearly_worse([True] * 9 + [False], [True] * 10, tolerance=0.02)  # one flip: could be chance
    False
    >>> clearly_worse([True] * 14 + [False] * 6, [True] * 20, tolerance=0.02)  # six flips, none back
    True
    """
    lost = sum(p and not c for c, p in zip(current, previous, strict=True))
    won = sum(c and not p for c, p in zip(current, previous, strict=True))
    n = lost + won
    if not current or (lost - won) / len(current) <= tolerance:
        return False
    p_value = sum(math.comb(n, k) for k in range(lost, n + 1)) / 2**n
    return bool(p_value < alpha)


def _mean(marks: list[bool]) -> float:
    return sum(marks) / len(marks) if marks else 0.0


class Lifecycle:
    def __init__(
        self, settings: WorkerSettings, redis: aioredis.Redis, engine: EngineClient, metrics: WorkerMetrics
    ):
        self.s = settings
        self.registry = Registry(redis)
        self.redis = redis
        self.engine = engine
        self.metrics = metrics
        self.router = AdapterRouter(redis, engine, settings.base_model_name, poll_s=1.0)
        extract = load_extractor(settings.answer_extractor)
        self.evaluator = Evaluator(self.router.adapters, settings.max_tokens, extract=extract)
        self._probe: list[LabeledItem] = []
        self._probe_mtime = -1.0
        self._probe_marks: dict[int, list[bool]] = {}  # per version: right or wrong on each probe item
        self._retiring: dict[int, asyncio.Task[None]] = {}
        self._checked: tuple[int, int] = (-1, 0)  # (version, labels) at the last feedback comparison
        self._last_check = 0.0
        self._history_cursor: str | None = None

    def name(self, version: int) -> str:
        return self.router.name(version)

    def version_of(self, name: str) -> int | None:
        return keys.version_of(name, self.s.base_model_name)

    async def loaded_versions(self) -> set[int]:
        """The versions vLLM has loaded under their names (the base model not counted)."""
        return {v for name in await self.engine.loaded_models() if (v := self.version_of(name))}

    # --- labeled checks ------------------------------------------------------------------------------

    def probe(self) -> list[LabeledItem]:
        """The probe file's items, re-read when the file changes (its accuracies are then stale)."""
        path = self.s.probe_path
        if path is None:
            return []
        mtime = path.stat().st_mtime
        if mtime != self._probe_mtime:
            self._probe, self._probe_mtime, self._probe_marks = load_probe(path), mtime, {}
        return self._probe

    async def probe_marks(self, version: int) -> list[bool] | None:
        """Whether `version` answers each probe item right (evaluated once per version and probe file)."""
        items = self.probe()
        if not items:
            return None
        if version not in self._probe_marks:
            route = await self.router.route_to(version)
            self._probe_marks[version] = await self.evaluator.correct(route, items)
            accuracy = {v: sum(m) / len(m) for v, m in self._probe_marks.items()}
            self.metrics.set_per_version(self.metrics.probe_accuracy, accuracy)
        return self._probe_marks[version]

    async def probe_accuracy(self, version: int) -> float | None:
        marks = await self.probe_marks(version)
        return None if marks is None else sum(marks) / len(marks)

    async def gate_accuracy(
        self, candidate: int, current: int
    ) -> tuple[dict[str, tuple[float, float]], dict[str, tuple[float, float]]]:
        """Per labeled check with enough labels: (candidate, current) accuracy, and (candidate, base model)
        accuracy where the check has a floor; always on the same items."""
        checks: dict[str, tuple[float, float]] = {}
        floors: dict[str, tuple[float, float]] = {}
        cand_probe, cur_probe = await self.probe_accuracy(candidate), await self.probe_accuracy(current)
        base_probe = await self.probe_accuracy(0)
        if cand_probe is not None and cur_probe is not None and base_probe is not None:
            checks["probe"] = (cand_probe, cur_probe)
            # Small losses within the tolerance must not add up, round after round, to below the start.
            floors["probe"] = (cand_probe, base_probe)
        items = await recent_feedback(self.redis, self.s.feedback_window)
        if len(items) >= self.s.gate_min_labels:
            cand, cur = await asyncio.gather(
                self.evaluator.accuracy(await self.router.route_to(candidate), items),
                self.evaluator.accuracy(await self.router.route_to(current), items),
            )
            checks["feedback"] = (cand, cur)
        return checks, floors

    # --- swap ----------------------------------------------------------------------------------------

    async def ensure_loaded(self, version: int) -> None:
        """Load `version` under its name if vLLM lacks it (a restart, or it was retired meanwhile)."""
        entry = await self.registry.get(version) if version else None
        if entry is not None and not entry.get("pruned"):
            await self.engine.load_adapter(self.name(version), str(entry["path"]))

    async def load_candidate(self, version: int, path: Path) -> None:
        await self.make_room(keep={version})
        await self.engine.load_adapter(self.name(version), str(path))

    async def promote(self, version: int, previous: int, parent: int | None = None) -> float:
        """Swap `version` in for `previous` (see the module doc); returns the seconds from load to pointer
        moved. `parent` is the version it was trained from, when not `previous` (a held candidate)."""
        started = time.monotonic()
        trained_from = previous if parent is None else parent
        try:
            await self.router.promote(version, reason=f"passed the gate (trained from v{trained_from})")
        except Exception:
            self.metrics.swaps.labels("failed").inc()
            await self.registry.update(version, status="rejected", reasons=["could not be loaded into vLLM"])
            raise
        took = time.monotonic() - started
        self.metrics.swaps.labels("ok").inc()
        self.metrics.swap_duration.observe(took)
        self.metrics.adapter_version.set(version)
        self.retire(previous)
        return took

    def retire(self, version: int) -> None:
        """Unload `version` after the grace period, unless it is current again by then."""
        if version == 0 or version in self._retiring:
            return

        async def later() -> None:
            await asyncio.sleep(self.s.swap_grace_s)
            with contextlib.suppress(Exception):
                if await self.registry.current() != version:
                    await self.engine.unload_adapter(self.name(version))
            self._retiring.pop(version, None)

        self._retiring[version] = asyncio.create_task(later())

    async def make_room(self, keep: set[int]) -> None:
        """Unload the oldest loaded versions until one more fits in `max_loaded_adapters`."""
        current = await self.registry.current()
        protected = {current, *keep, *self._retiring}
        loaded = sorted(await self.loaded_versions())
        excess = len(loaded) + 1 - self.s.max_loaded_adapters
        for version in [v for v in loaded if v not in protected][: max(0, excess)]:
            await self.engine.unload_adapter(self.name(version))

    # --- rollback ------------------------------------------------------------------------------------

    async def check_rollback(self, force: bool = False) -> int | None:
        """Roll back to the predecessor if it beats the current version on labels; returns where to."""
        if not force and time.monotonic() - self._last_check < self.s.rollback_check_s:
            return None
        self._last_check = time.monotonic()
        current = await self.registry.current()
        previous = await self.registry.predecessor(current) if current else None
        if previous is None:
            return None
        entry = await self.registry.get(previous) if previous else {}
        if entry is None or entry.get("pruned"):
            return None
        reasons = []
        loaded_here = False
        if previous and self.name(previous) not in await self.engine.loaded_models():
            await self.make_room(keep={previous})
            await self.engine.load_adapter(self.name(previous), str(entry["path"]))
            loaded_here = True
        try:
            reasons = await self._regressions(current, previous)
        finally:
            # Unload only what this check loaded: another process may be using a name it found loaded.
            if loaded_here and not reasons and previous not in self._retiring:
                await self.engine.unload_adapter(self.name(previous))
        if not reasons:
            return None
        reason = "; ".join(reasons)
        log.warning("rolling back v%d to v%d: %s", current, previous, reason)
        await self.router.promote(previous, reason=f"automatic rollback: {reason}")
        self.metrics.adapter_version.set(previous)
        self.retire(current)
        return previous

    async def _regressions(self, current: int, previous: int) -> list[str]:
        """Why `current` is worse than `previous` on labels, if it is: both checks are paired (the same
        items) and must be beyond the tolerance *and* unlikely to be chance (`clearly_worse`)."""
        tol = self.s.accuracy_tolerance
        reasons = []
        cur_probe, prev_probe = await self.probe_marks(current), await self.probe_marks(previous)
        if cur_probe is not None and prev_probe is not None and clearly_worse(cur_probe, prev_probe, tol):
            reasons.append(
                f"probe accuracy {_mean(cur_probe):.1%}, v{previous} gets {_mean(prev_probe):.1%} "
                "on the same items"
            )
        served = [
            i
            for i in await recent_feedback(self.redis, self.s.feedback_window)
            if i.served_version == current
        ]
        version, seen = self._checked
        fresh_labels = version != current or len(served) >= seen + 5  # re-compare only on new evidence
        if len(served) >= self.s.rollback_min_labels and fresh_labels:
            self._checked = (current, len(served))
            cur = [bool(i.served_correct) for i in served]
            prev = await self.evaluator.correct(await self.router.route_to(previous), served)
            if clearly_worse(cur, prev, tol):
                reasons.append(
                    f"feedback accuracy {_mean(cur):.1%} on {len(served)} labeled answers, "
                    f"v{previous} gets {_mean(prev):.1%} on the same requests"
                )
        return reasons

    # --- retention and metrics -----------------------------------------------------------------------

    async def prune(self, keep: Iterable[int] = ()) -> list[int]:
        """Delete the folders `prunable` allows; `keep` are versions the worker still trains from."""
        versions = await self.registry.all()
        current = await self.registry.current()
        try:
            loaded = await self.loaded_versions()
        except EngineUnavailableError:
            return []  # cannot tell what vLLM still reads: delete nothing
        protected = {current, await self.registry.predecessor(current) or 0, *loaded, *self._retiring, *keep}
        doomed = prunable(versions, protected, self.s.retention_promoted, self.s.retention_rejected)
        for version in doomed:
            path = versions[version].get("path")
            if path:
                shutil.rmtree(path, ignore_errors=True)
            await self.registry.update(version, pruned=True)
        if doomed:
            log.info("retention: deleted the folders of versions %s", doomed)
        return doomed

    async def observe(self) -> None:
        """Metrics from real events: pointer moves (rollbacks), served accuracy per version from labels."""
        if self._history_cursor is None:  # count moves from now on: a counter starts at 0 with the process
            last = entries(await self.redis.xrevrange(keys.ADAPTER_HISTORY, count=1))
            self._history_cursor = last[0][0] if last else "0-0"
        moves = entries(await self.redis.xrange(keys.ADAPTER_HISTORY, min=f"({self._history_cursor}"))
        for entry_id, fields in moves:
            self._history_cursor = entry_id
            if fields.get("kind") == "rollback":
                self.metrics.rollbacks.inc()
        self.metrics.adapter_version.set(await self.registry.current())
        tally: dict[int, list[int]] = {}
        window = await self.redis.xrevrange(keys.FEEDBACK, count=self.s.feedback_window)
        for entry_id, fields in entries(window):
            feedback = FeedbackRecord.parse(entry_id, fields)
            counts = tally.setdefault(feedback.adapter_version, [0, 0])
            counts[0] += 1
            counts[1] += feedback.correct
        self.metrics.set_per_version(
            self.metrics.feedback_accuracy, {v: c / n for v, (n, c) in tally.items()}
        )

    async def aclose(self) -> None:
        for task in self._retiring.values():
            task.cancel()
