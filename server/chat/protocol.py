"""The request of `POST /v1/chat/completions`, in OpenAI's wire format as vLLM takes it.

Only the fields below are accepted: OpenAI's sampling parameters that vLLM honours, and a few of vLLM's own
(`top_k`, `min_p`, `repetition_penalty`, which the `openai` SDK sends through `extra_body`). Any other field
is refused with 400 naming it, rather than silently ignored. Replies are vLLM's, passed on with the model
name of the version that answered (`server/chat/serving.py`), so they are not modelled here.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.wire import MAX_SAMPLES


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: str


class ImageURL(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="a data:image/...;base64,... URL (remote URLs only for allowed hosts)")
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["image_url"]
    image_url: ImageURL


Part = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[Part] | None = None
    name: str | None = None

    def parts(self) -> list[TextPart | ImagePart]:
        if self.content is None:
            return []
        if isinstance(self.content, str):
            return [TextPart(type="text", text=self.content)]
        return list(self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool | None = None


class ChatRequest(BaseModel):
    """The body of `POST /v1/chat/completions`."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="`ttrv` (the current version), `ttrv-vN` (pinned) or `base`")
    messages: list[Message] = Field(min_length=1)
    n: int = Field(default=1, ge=1, le=MAX_SAMPLES)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(default=None, max_length=256)
    metadata: dict[str, str] | None = Field(
        default=None, description="kept by the gateway: `ttrv_stream` names the adaptation stream"
    )
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    # vLLM's own sampling parameters (the openai SDK sends them through `extra_body`).
    top_k: int | None = None
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    repetition_penalty: float | None = Field(default=None, gt=0.0)


class ModelCard(BaseModel):
    """One entry of `GET /v1/models`, as OpenAI's (and vLLM's) model objects are."""

    id: str
    object: Literal["model"] = "model"
    created: int = Field(
        description="Unix time: when the version was made (the gateway's start for the rest)"
    )
    owned_by: str = "ttrv"
    root: str | None = Field(default=None, description="the base model every version adapts")
    parent: str | None = Field(default=None, description="the version it was trained from")
    ttrv_version: int | None = Field(
        default=None, description="the adapter version this name answers with now (0 = base model)"
    )


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
