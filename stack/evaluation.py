"""After the demo's stream: each version's greedy accuracy on held-out labeled images, asked of vLLM directly.

The held-out images are the shifted *evaluation* split, which the stream never contained, and the clean
evaluation split: adaptation must help on the shift without costing the clean accuracy. Each version is
loaded under its own name for the evaluation and unloaded after, unless it is the one being served.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clients.models import AdapterList
from core import keys
from core.engine import EngineClient
from core.images import sniff_mime
from core.routing import AdapterEngine, Route
from core.rows import Row
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
    evaluator = Evaluator(AdapterEngine(engine), max_tokens, concurrency=32)
    served = [v for v in adapters.versions if v.status in ("promoted", "rolled_back") and not v.pruned]
    results = []
    try:
        for info in [None, *served]:
            version = 0 if info is None else info.version
            route = Route(
                version, keys.adapter_name(version, SERVED_NAME), None if info is None else info.path
            )
            if route.path is not None:
                await engine.load_adapter(route.name, route.path)
            shifted_acc = await evaluator.accuracy(route, shifted)
            # Clean accuracy (forgetting) for the base and the version served at the end; it barely moves.
            last = info is None or version == adapters.current
            clean_acc = await evaluator.accuracy(route, clean) if last else None
            if version and version != adapters.current:
                await engine.unload_adapter(route.name)
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
    items = []
    for r in unique.values():
        image = r.image_path.read_bytes()
        items.append(LabeledItem(r.id, image, r.prompt, None, str(r.answer), sniff_mime(image)))
    engine = EngineClient(vllm_url, timeout_s=120.0)
    base = Route(0, SERVED_NAME, None)
    try:
        marks = await Evaluator(AdapterEngine(engine), max_tokens, concurrency=32).correct(base, items)
    finally:
        await engine.aclose()
    return {item.key: mark for item, mark in zip(items, marks, strict=True)}
