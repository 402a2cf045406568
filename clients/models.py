"""Pydantic models of the wire contract (DESIGN.md), as the client sends and reads them.

Reply models ignore unknown fields, so a newer server that adds a field does not break an older client.
Request models forbid them, so a typo in the SDK fails here rather than as a 422 from the server.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class AnswerRequest(BaseModel):
    """Body of `POST /v1/answer`; fields left as None are not sent."""

    model_config = ConfigDict(extra="forbid")

    image: str = Field(description="image bytes, base64-encoded")
    question: str
    options: list[str] | None = None
    request_id: str | None = None
    stream: str | None = None
    samples: int | None = None

    def body(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class FeedbackRequest(BaseModel):
    """Body of `POST /v1/feedback`: the true label of an answered request, for accuracy."""

    model_config = ConfigDict(extra="forbid")

    id: str
    label: str


class Answer(BaseModel):
    """200 reply of `POST /v1/answer`. `adapter_version` 0 is the base model."""

    model_config = ConfigDict(extra="ignore")

    id: str
    answer: str
    text: str
    adapter_version: int
    confidence: float | None = None
    latency_ms: float


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="ignore")

    message: str
    type: str
    param: str | None = None
    code: str | int | None = None


class ErrorEnvelope(BaseModel):
    """Every error reply of the gateway: `{"error": {"message", "type", "param", "code"}}`."""

    model_config = ConfigDict(extra="ignore")

    error: ErrorDetail


class AdapterInfo(BaseModel):
    """One adapter version in the registry; `status` is candidate, promoted, rejected or rolled_back."""

    model_config = ConfigDict(extra="ignore")

    version: int
    status: str
    parent: int | None = None
    path: str | None = None
    created_at: str | None = None
    promoted_at: str | None = None
    rolled_back_at: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    reasons: list[str] = Field(default_factory=list)
    rollback_reason: str | None = None
    pruned: bool = False


class AdapterMove(BaseModel):
    """One move of the current pointer: kind `promote`, or `rollback` to an older version."""

    model_config = ConfigDict(extra="ignore")

    version: int
    previous: int
    kind: str
    reason: str
    ts: float


class AdapterList(BaseModel):
    """Reply of `GET /v1/adapters`: every version, the current (served) one, and the latest moves."""

    model_config = ConfigDict(extra="ignore")

    current: int
    versions: list[AdapterInfo]
    history: list[AdapterMove] = Field(default_factory=list)
