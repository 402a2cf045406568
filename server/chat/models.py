"""Model names of the OpenAI API, and `GET /v1/models`.

- `ttrv` (`TTRV_SERVED_MODEL_NAME`): the current version, whichever it is when the request arrives (the
  router follows the pointer, as `/v1/answer` does);
- `ttrv-vN`: version N, pinned (any version that was served and whose files are kept);
- `base` (and the name vLLM serves the base model under): the base model, never adapted.

A reply's `model` is always the name of the version that produced it, so provenance is never lost.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from core import keys
from core.routing import Route
from server.chat.protocol import ModelCard, ModelList
from server.deps import Gateway
from server.errors import APIError

BASE_ALIAS = "base"
SERVABLE = ("promoted", "rolled_back")  # statuses of versions that were served; candidates never were
STARTED = int(time.time())


async def resolve(name: str, gateway: Gateway) -> Route | None:
    """The route a model name asks for; None for the stable name (the current version, followed)."""
    s = gateway.settings
    if name == s.served_model_name:
        return None
    if name in (BASE_ALIAS, s.base_model_name):
        return Route(0, s.base_model_name, None)
    version = keys.version_of(name, s.base_model_name)
    entry = await gateway.router.registry.get(version) if version else None
    if version is None or entry is None:
        raise _not_found(name, s.served_model_name)
    if entry.get("status") not in SERVABLE or entry.get("pruned"):
        why = "its files were deleted by retention" if entry.get("pruned") else f"it is {entry.get('status')}"
        raise _not_found(name, s.served_model_name, f"{name} cannot be served: {why}")
    return Route(version, gateway.router.name(version), str(entry["path"]))


def _not_found(name: str, stable: str, why: str | None = None) -> APIError:
    message = why or f"the model {name!r} does not exist"
    return APIError(
        404,
        f"{message}; use {stable!r} (the current version), 'ttrv-vN' or 'base' (GET /v1/models lists them)",
        "invalid_request_error",
        param="model",
        code="model_not_found",
    )


def _unix(iso: Any) -> int:
    try:
        return int(datetime.fromisoformat(str(iso)).timestamp())
    except ValueError:
        return STARTED


async def model_list(gateway: Gateway) -> ModelList:
    """The stable name, the base model, and every servable version, oldest first."""
    s = gateway.settings
    versions = await gateway.router.registry.all()
    current = gateway.router.route.version
    cards = [
        ModelCard(
            id=s.served_model_name,
            created=_unix(versions.get(current, {}).get("promoted_at")) if current else STARTED,
            root=s.base_model_name,
            ttrv_version=current,
        ),
        ModelCard(id=BASE_ALIAS, created=STARTED, root=s.base_model_name, ttrv_version=0),
    ]
    for version, entry in sorted(versions.items()):
        if entry.get("status") in SERVABLE and not entry.get("pruned"):
            parent = entry.get("parent")
            cards.append(
                ModelCard(
                    id=gateway.router.name(version),
                    created=_unix(entry.get("created_at")),
                    root=s.base_model_name,
                    parent=None if parent is None else gateway.router.name(int(parent)),
                    ttrv_version=version,
                )
            )
    return ModelList(data=cards)
