"""After the demo's stream: each version's greedy accuracy on held-out labeled images, asked of vLLM directly.

The held-out images are the shifted *evaluation* split, which the stream never contained, and the clean
evaluation split: adaptation must help on the shift without costing the clean accuracy. Each version is
loaded under its own name for the evaluation and unloaded after, unless it is the one being served.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clients.models import AdapterList
from clients.rows import Row
from server import keys
from server.engine import EngineClient
from stack.vllm import SERVED_NAME


@dataclass(frozen=True)
class VersionAccuracy:
    version: int
    status: str
    shifted: float
    clean: float | None  # measured for the base model and the final version only


async def evaluate_versions(
    vllm_url: str,
    adapters: AdapterList,
    shifted_rows: Path,
    clean_rows: Path,
    limit: int,
    skip_shifted: int = 0,
    max_tokens: int = 32,
) -> list[VersionAccuracy]:
    """Base model and every version that was ever promoted (and whose files are kept), on `limit` rows of
    each file; the first `skip_shifted` shifted rows (the gate's probe) are left out."""
    from adapter.labeled import Evaluator, load_probe

    shifted = load_probe(shifted_rows)[skip_shifted : skip_shifted + limit]
    clean = load_probe(clean_rows)[:limit]
    engine = EngineClient(vllm_url, timeout_s=120.0)
    evaluator = Evaluator(engine, max_tokens, concurrency=32)
    served = [v for v in adapters.versions if v.status in ("promoted", "rolled_back") and not v.pruned]
    results = []
    try:
        for info in [None, *served]:
            version = 0 if info is None else info.version
            name = keys.adapter_name(version, SERVED_NAME)
            path = None if info is None else info.path
            if path is not None:
                await engine.load_adapter(name, path)
            shifted_acc = await evaluator.accuracy(name, shifted, path)
            # Clean accuracy (forgetting) for the base and the version served at the end; it barely moves.
            last = info is None or version == adapters.current
            clean_acc = await evaluator.accuracy(name, clean, path) if last else None
            if version and version != adapters.current:
                await engine.unload_adapter(name)
            status = "base" if info is None else info.status
            results.append(VersionAccuracy(version, status, shifted_acc, clean_acc))
    finally:
        await engine.aclose()
    return results


async def base_answers_correct(vllm_url: str, rows: list[Row], max_tokens: int = 32) -> dict[str, bool]:
    """Whether the base model's greedy answer is right, per row id: what serving without adaptation would
    have given on exactly the requests that were served (the paired reference for served accuracy)."""
    from adapter.labeled import Evaluator, LabeledItem

    unique = {row.id: row for row in rows if row.answer is not None}
    items = [
        LabeledItem(r.id, r.image_path.read_bytes(), r.prompt, None, str(r.answer)) for r in unique.values()
    ]
    engine = EngineClient(vllm_url, timeout_s=120.0)
    try:
        marks = await Evaluator(engine, max_tokens, concurrency=32).correct(SERVED_NAME, items)
    finally:
        await engine.aclose()
    return {item.key: mark for item, mark in zip(items, marks, strict=True)}
