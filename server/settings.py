"""Settings of the gateway process, from `TTRV_*` environment variables (the only place they are read)."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.answers import load_extractor


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TTRV_", extra="ignore")

    host: str = Field(default="127.0.0.1", description="address `ttrv serve` binds to")
    port: int = Field(default=8000, description="port `ttrv serve` listens on")
    redis_url: str = Field(
        default="redis://127.0.0.1:6390/0", description="Redis holding records and adapters"
    )
    vllm_url: str = Field(default="http://127.0.0.1:8100", description="vLLM OpenAI server (internal port)")
    base_model_name: str = Field(default="base", description="name vLLM serves the base model under")

    api_keys: list[str] = Field(
        default=[], description="keys accepted on public routes (Bearer); empty = public routes are open"
    )
    admin_token: str | None = Field(
        default=None, description="token for admin routes (Bearer); unset = admin routes are refused"
    )

    max_image_bytes: int = Field(default=8 * 1024 * 1024, description="largest image file accepted, in bytes")
    max_image_pixels: int = Field(default=16_000_000, description="largest width x height accepted (bombs)")
    max_tokens: int = Field(default=32, description="tokens the engine may generate for one answer")
    image_ttl_s: int = Field(default=7 * 24 * 3600, description="how long images and answers stay in Redis")

    stream_maxlen: int = Field(
        default=200_000, description="records kept in the stream; only acknowledged ones are trimmed"
    )
    max_backlog: int = Field(
        default=100_000, description="records not yet acknowledged by the worker; beyond it answers get 429"
    )
    buffer_max: int = Field(
        default=10_000, description="records held in memory while Redis is down; past it they are dropped"
    )
    rate_limit_per_s: float = Field(default=0.0, description="requests/s per API key (or client); 0 = off")
    rate_limit_burst: int = Field(default=50, description="requests a client may send at once above its rate")
    max_in_flight: int = Field(default=256, description="answers being computed at once; beyond it 429")
    engine_timeout_s: float = Field(default=60.0, description="timeout of one engine call")
    retry_after_s: int = Field(default=2, description="Retry-After sent with 429 and 503")
    adapter_poll_s: float = Field(default=1.0, description="re-read the current adapter at least this often")
    log_json: bool = Field(default=True, description="one JSON object per log line (else plain text)")

    served_model_name: str = Field(
        default="ttrv",
        description="the OpenAI API's stable model name: the current version, whichever it is "
        "(`ttrv-vN` pins a version and `base` the base model)",
    )
    chat_max_tokens: int = Field(
        default=256,
        ge=1,
        description="the most tokens one chat completion may generate; a larger max_tokens is capped to it",
    )
    image_url_hosts: list[str] = Field(
        default=[],
        description="hosts the gateway may fetch chat `image_url`s from (http/https, no redirects); empty = "
        "images must come as data: URLs",
    )
    image_fetch_timeout_s: float = Field(default=5.0, description="timeout of fetching one remote image")
    answer_extractor: str = Field(
        default="default",
        description="what counts as the same answer: `default` (option letter, or normalised text), `exact`, "
        "or package.module:function (core/plugins.py); the worker must use the same",
    )

    @field_validator("answer_extractor")
    @classmethod
    def _importable(cls, spec: str) -> str:
        load_extractor(spec)  # fails at start, naming the setting, rather than on the first request
        return spec

    @model_validator(mode="after")
    def _consistent(self) -> GatewaySettings:
        """Rules across fields, each with the variable to change."""
        if self.admin_token is not None and self.admin_token in self.api_keys:
            raise ValueError(
                "TTRV_ADMIN_TOKEN is also one of TTRV_API_KEYS: every client with that key could promote "
                "and pause; give the admin token its own value"
            )
        if self.rate_limit_per_s > 0 and self.rate_limit_burst < 1:
            raise ValueError(
                f"TTRV_RATE_LIMIT_BURST={self.rate_limit_burst} with a rate limit on lets no request "
                "through; set it to at least 1"
            )
        return self
