"""Pydantic models of every wire format of the gateway (docs/design.md, "Wire contract").

The one definition: the gateway validates and serializes with these, and the SDK's reply models
(`clients/wire.py`) are generated from them (`python -m stack.sdk_wire`), so the two cannot drift.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

REQUEST_ID_PATTERN = r"^[A-Za-z0-9._:\-]{1,128}$"
STREAM_PATTERN = r"^[a-z0-9_\-]{1,64}$"
MAX_SAMPLES = 32


class AnswerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: str = Field(
        min_length=1,
        description="image bytes, base64, or a data:image/...;base64,... URL (never a remote URL)",
    )
    question: str = Field(min_length=1, max_length=4000, description="the question about the image")
    options: list[str] | None = Field(
        default=None,
        min_length=2,
        max_length=26,
        description="multiple choice: rendered as A./B./... and the answer is the option's letter",
    )
    request_id: str | None = Field(
        default=None,
        pattern=REQUEST_ID_PATTERN,
        description="idempotency key: a repeat returns the first answer",
    )
    stream: str = Field(
        default="default", pattern=STREAM_PATTERN, description="adaptation stream (tenant/domain)"
    )
    samples: int = Field(default=1, ge=1, le=MAX_SAMPLES, description="self-consistency votes at serve time")


class AnswerResponse(BaseModel):
    """200 reply of `POST /v1/answer`. `adapter_version` 0 is the base model."""

    id: str
    answer: str = Field(description="the extracted answer: an option letter, or the normalized text")
    text: str = Field(description="the model's raw text (of the first sample)")
    adapter_version: int = Field(description="the adapter that produced the answer; 0 = base model")
    confidence: float | None = Field(description="vote share of `answer` when samples > 1")
    latency_ms: float


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=REQUEST_ID_PATTERN, description="the `id` of an earlier answer")
    label: str = Field(
        min_length=1, max_length=200, description="the true answer, as an answer would be given"
    )


class FeedbackResponse(BaseModel):
    """200 reply of `POST /v1/feedback`: whether the answer was right, and which version gave it."""

    id: str
    correct: bool = Field(description="whether the served answer matched the label")
    adapter_version: int


class AdapterInfo(BaseModel):
    """One adapter version in the registry."""

    version: int
    status: str = Field(description="candidate, promoted, rejected or rolled_back")
    parent: int | None = Field(default=None, description="the version it was trained from (0 = base)")
    path: str | None = Field(default=None, description="its folder (PEFT files and metadata.json)")
    created_at: str | None = None
    promoted_at: str | None = None
    rejected_at: str | None = None
    rolled_back_at: str | None = None
    records: int | None = Field(default=None, description="records its round trained on")
    steps: int | None = Field(default=None, description="optimizer steps of its round")
    metrics: dict[str, float] = Field(default_factory=dict, description="round and gate statistics")
    reasons: list[str] = Field(default_factory=list, description="why the gate rejected it")
    rollback_reason: str | None = None
    pruned: bool = Field(default=False, description="its files were deleted by the retention policy")


class AdapterMove(BaseModel):
    """One move of the current pointer: a promotion, or a rollback to an older version."""

    version: int
    previous: int
    kind: str = Field(description="promote or rollback")
    reason: str
    ts: float = Field(description="Unix time of the move")


class AdapterList(BaseModel):
    """Reply of `GET /v1/adapters`: every version, the current (served) one, and the latest moves."""

    current: int
    versions: list[AdapterInfo]
    history: list[AdapterMove] = Field(default_factory=list, description="latest pointer moves, oldest first")


class AdaptationState(BaseModel):
    """Reply of `POST /v1/adaptation/pause` and `.../resume`."""

    paused: bool


class ErrorDetail(BaseModel):
    """What went wrong: `message` says what to do; `code` is the HTTP status."""

    message: str = Field(description="what is wrong and what to do")
    type: str
    param: str | None = None
    code: int | str | None = None


class ErrorEnvelope(BaseModel):
    """Every error reply of the gateway: `{"error": {"message", "type", "param", "code"}}`."""

    error: ErrorDetail


class ComponentState(BaseModel):
    """One component of `GET /ready`: whether it is usable, and why not."""

    ok: bool
    detail: str = ""


class ReadyResponse(BaseModel):
    """Reply of `GET /ready` (200 when ready, 503 when not): the state of each component."""

    ready: bool
    components: dict[str, ComponentState]
    adapter_version: int


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorEnvelope, "description": what}
    for code, what in {
        400: "unreadable image or bad field",
        401: "missing or unknown API key",
        403: "not allowed (admin route)",
        404: "unknown answer id or adapter version",
        409: "the adapter version's files were deleted by the retention policy",
        413: "image over the byte or pixel limit",
        415: "unsupported content or image type",
        422: "request does not match the schema",
        429: "rate limit, too many in flight, or backlog full (see Retry-After)",
        503: "engine or Redis unavailable (see Retry-After)",
    }.items()
}
