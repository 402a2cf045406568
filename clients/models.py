"""Models of the wire contract (docs/design.md), as the SDK sends and reads them.

Reply models are the server's own definitions (`core/wire.py`), written out into `clients/wire.py` by
`python -m stack.sdk_wire` so that the SDK needs no project package; they ignore unknown fields, so a newer
server that adds one does not break an older client. Request models are the SDK's: fields left as None are
not sent, and unknown fields are refused here, so a typo in the SDK fails before it becomes a 422.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from clients.wire import (
    AdaptationState,
    AdapterInfo,
    AdapterList,
    AdapterMove,
    AnswerResponse,
    ComponentState,
    ErrorDetail,
    ErrorEnvelope,
    FeedbackResponse,
    ReadyResponse,
)

Answer = AnswerResponse  # the SDK's name for the reply of `POST /v1/answer`


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


__all__ = [
    "AdaptationState",
    "AdapterInfo",
    "AdapterList",
    "AdapterMove",
    "Answer",
    "AnswerRequest",
    "AnswerResponse",
    "ComponentState",
    "ErrorDetail",
    "ErrorEnvelope",
    "FeedbackRequest",
    "FeedbackResponse",
    "ReadyResponse",
]
