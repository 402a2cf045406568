"""`ttrv export VERSION OUT`: a version as a standalone folder, usable outside the server.

- By default a PEFT adapter folder (`adapter_config.json`, `adapter_model.safetensors`), whose
  `base_model_name_or_path` points at the served model's folder: `PeftModel.from_pretrained(base, OUT)`.
- With `merge`, the base model with the LoRA merged into its weights, plus its processor: a plain Hugging
  Face model folder (`AutoModelForImageTextToText.from_pretrained(OUT)`), which vLLM can serve as well.

Either way the folder gets a model card (`README.md`) naming the version, its parent, how many records its
round trained on, and the gate's decision with its reasons and metrics; `ttrv_version.json` keeps the whole
registry entry. The version is marked `exported` in the registry, and retention never deletes an exported
version's folder (`adapter.lifecycle.prunable`).
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from adapter.settings import WorkerSettings
from core.registry import Registry, UnknownVersionError, VersionPrunedError

PEFT_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


async def _entry(settings: WorkerSettings, version: int) -> dict[str, Any]:
    client = aioredis.Redis.from_url(settings.redis_url, socket_timeout=5.0)
    try:
        entry = await Registry(client).get(version)
    finally:
        await client.aclose()
    if entry is None:
        raise UnknownVersionError(version)
    if entry.get("pruned") or not Path(str(entry.get("path"))).is_dir():
        raise VersionPrunedError(version)
    return entry


async def _mark(settings: WorkerSettings, version: int, out: Path) -> None:
    client = aioredis.Redis.from_url(settings.redis_url, socket_timeout=5.0)
    try:
        registry = Registry(client)
        entry = await registry.get(version) or {}
        places = [*entry.get("exported_to", []), str(out.resolve())]
        await registry.update(version, exported=True, exported_to=places)
    finally:
        await client.aclose()


def model_card(version: int, entry: dict[str, Any], base: Path, merged: bool) -> str:
    """The README.md of an exported version.

    >>> card = model_card(3, {"parent": 1, "records": 24, "status": "promoted", "reasons": [],
    ...                       "metrics": {"probe_accuracy": 0.9}}, Path("/m"), merged=False)
    >>> "ttrv-v3" in card and "trained from ttrv-v1" in card and "24 records" in card
    True
    """
    parent = entry.get("parent")
    lineage = "the base model" if not parent else f"ttrv-v{parent}"
    metrics = entry.get("metrics") or {}
    reasons = entry.get("reasons") or []
    kind = "merged weights (base + LoRA)" if merged else "a PEFT LoRA adapter"
    load = (
        "AutoModelForImageTextToText.from_pretrained(folder)"
        if merged
        else "PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(base), folder)"
    )
    lines = [
        "---",
        f"base_model: {base}",
        "library_name: " + ("transformers" if merged else "peft"),
        "tags: [ttrv, test-time-adaptation, grpo, lora]",
        "---",
        "",
        f"# ttrv-v{version}",
        "",
        f"Exported by ttrv-server as {kind}. Adapted at test time, without labels, with TTRV's reward "
        "(arXiv 2510.06783) on the server's live traffic.",
        "",
        f"- Base model: `{base}`",
        f"- Lineage: trained from {lineage} on {entry.get('records', 0)} records "
        f"({entry.get('replayed', 0)} replayed, {entry.get('held_out', 0)} held out for the gate), "
        f"{entry.get('steps', 0)} optimizer steps, created {entry.get('created_at', 'unknown')}",
        f"- Training: {json.dumps(entry.get('settings', {}))}",
        f"- Gate: status `{entry.get('status')}`" + (f"; reasons: {'; '.join(reasons)}" if reasons else ""),
        "- Round and gate metrics: "
        + (", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items())) or "none"),
        "",
        f"Load it with `{load}`. The whole registry entry is in `ttrv_version.json`.",
        "",
    ]
    return "\n".join(lines)


def export_version(settings: WorkerSettings, version: int, out: Path, merge: bool = False) -> Path:
    """Write `version` to the new folder `out` (see the module doc); returns it."""
    entry = asyncio.run(_entry(settings, version))
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty: export into a new folder")
    source, base = Path(str(entry["path"])), settings.model_folder
    out.mkdir(parents=True, exist_ok=True)
    if merge:
        _merge(source, base, out)
    else:
        for name in PEFT_FILES:
            if (source / name).exists():
                shutil.copy2(source / name, out / name)
        config = json.loads((out / "adapter_config.json").read_text())
        config["base_model_name_or_path"] = str(base)
        (out / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "README.md").write_text(model_card(version, entry, base, merge))
    (out / "ttrv_version.json").write_text(json.dumps({"version": version, **entry}, indent=2) + "\n")
    asyncio.run(_mark(settings, version, out))
    return out


def _merge(source: Path, base: Path, out: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(base)
    merged = PeftModel.from_pretrained(model, source).merge_and_unload()
    merged.save_pretrained(out)
    AutoProcessor.from_pretrained(base).save_pretrained(out)  # type: ignore[no-untyped-call]
