"""Reply models of the TTRV gateway, as the SDK reads them. GENERATED: do not edit.

Written by `python -m stack.sdk_wire` from the server's definitions in `core/wire.py` (a test checks that
this file is current). Unknown fields are ignored, so a newer server that adds one does not break this client.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class AnswerResponse(BaseModel):
    """200 reply of `POST /v1/answer`. `adapter_version` 0 is the base model."""

    model_config = ConfigDict(extra="ignore")

    id: str
    answer: str = Field(description="the extracted answer: an option letter, or the normalized text")
    text: str = Field(description="the model's raw text (of the first sample)")
    adapter_version: int = Field(description="the adapter that produced the answer; 0 = base model")
    confidence: float | None = Field(description="vote share of `answer` when samples > 1")
    latency_ms: float


class FeedbackResponse(BaseModel):
    """200 reply of `POST /v1/feedback`: whether the answer was right, and which version gave it."""

    model_config = ConfigDict(extra="ignore")

    id: str
    correct: bool = Field(description="whether the served answer matched the label")
    adapter_version: int


class AdapterInfo(BaseModel):
    """One adapter version in the registry."""

    model_config = ConfigDict(extra="ignore")

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

    model_config = ConfigDict(extra="ignore")

    version: int
    previous: int
    kind: str = Field(description="promote or rollback")
    reason: str
    ts: float = Field(description="Unix time of the move")


class AdapterList(BaseModel):
    """Reply of `GET /v1/adapters`: every version, the current (served) one, and the latest moves."""

    model_config = ConfigDict(extra="ignore")

    current: int
    versions: list[AdapterInfo]
    history: list[AdapterMove] = Field(default_factory=list, description="latest pointer moves, oldest first")


class AdaptationState(BaseModel):
    """Reply of `POST /v1/adaptation/pause` and `.../resume`."""

    model_config = ConfigDict(extra="ignore")

    paused: bool


class ErrorDetail(BaseModel):
    """What went wrong: `message` says what to do; `code` is the HTTP status."""

    model_config = ConfigDict(extra="ignore")

    message: str = Field(description="what is wrong and what to do")
    type: str
    param: str | None = None
    code: int | str | None = None


class ErrorEnvelope(BaseModel):
    """Every error reply of the gateway: `{"error": {"message", "type", "param", "code"}}`."""

    model_config = ConfigDict(extra="ignore")

    error: ErrorDetail


class ComponentState(BaseModel):
    """One component of `GET /ready`: whether it is usable, and why not."""

    model_config = ConfigDict(extra="ignore")

    ok: bool
    detail: str = ""


class ReadyResponse(BaseModel):
    """Reply of `GET /ready` (200 when ready, 503 when not): the state of each component."""

    model_config = ConfigDict(extra="ignore")

    ready: bool
    components: dict[str, ComponentState]
    adapter_version: int
