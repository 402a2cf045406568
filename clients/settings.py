"""Settings of the Python client and the `ttrv` client commands, from `TTRV_*` environment variables.

The only place the client reads the environment: explicit arguments to the SDK and CLI options win over it.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ClientSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TTRV_", extra="ignore")

    url: str = Field(default="http://127.0.0.1:8000", description="base URL of the TTRV gateway")
    api_key: str | None = Field(
        default=None, description="sent as `Authorization: Bearer <key>` on the public routes"
    )
    admin_token: str | None = Field(
        default=None,
        description="sent as `Authorization: Bearer <token>` on admin routes (promote, pause, resume)",
    )
    timeout_s: float = Field(default=60.0, description="timeout of one HTTP attempt, in seconds")
