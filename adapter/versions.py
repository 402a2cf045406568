"""Adapter versions on disk: immutable folders `vN/`, numbered by Redis, never reused.

A version folder holds PEFT's files and `metadata.json`; it is written under a temporary name and renamed,
so vLLM (which reads the folder lazily, at first use) never sees a half-written adapter.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from adapter.gate import GateDecision
from adapter.policy import Policy
from core import keys
from core.registry import Registry


def version_dir(adapter_dir: Path, version: int) -> Path:
    return adapter_dir / f"v{version}"


async def next_version(redis: aioredis.Redis) -> int:
    """A fresh version number: INCR is atomic, so two workers never get the same one."""
    return int(await redis.incr(keys.ADAPTER_NEXT_VERSION))


def save_version(policy: Policy, adapter_dir: Path, version: int, metadata: dict[str, Any]) -> Path:
    final = version_dir(adapter_dir, version)
    tmp = adapter_dir / f".v{version}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    policy.save(tmp)
    meta = {"version": version, "created_at": datetime.now(UTC).isoformat(timespec="seconds"), **metadata}
    (tmp / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    tmp.rename(final)
    return final


async def record_decision(redis: aioredis.Redis, version: int, decision: GateDecision) -> None:
    """Store the gate's decision and reasons with the version (shown by GET /v1/adapters). A passed
    candidate stays `candidate` until the swap succeeds (then `promoted`)."""
    fields: dict[str, Any] = {"reasons": decision.reasons, "metrics": decision.metrics}
    if not decision.passed:
        fields["status"] = "rejected"
    await Registry(redis).update(version, **fields)
