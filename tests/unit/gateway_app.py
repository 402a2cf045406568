"""The gateway app on a fake engine and fakeredis, for the unit tests of its routes (test_gateway.py,
test_chat.py, test_plugins.py): how to make one, read its records and check an error envelope."""

from __future__ import annotations

from typing import Any

import fakeredis
from fastapi.testclient import TestClient

from core import keys
from server.app import create_app
from server.settings import GatewaySettings
from tests.unit.fakes import FakeEngine

KEY, ADMIN = "key-1", "admin-1"


def settings(**overrides: Any) -> GatewaySettings:
    return GatewaySettings(**{"api_keys": [KEY], "admin_token": ADMIN, "adapter_poll_s": 0.05, **overrides})


def client_for(redis: fakeredis.FakeAsyncRedis, engine: FakeEngine, **overrides: Any) -> TestClient:
    """A TestClient (use it as a context manager, so the lifespan runs) sending the API key."""
    app = create_app(settings(**overrides), redis=redis, engine=engine)  # type: ignore[arg-type]
    return TestClient(app, headers={"Authorization": f"Bearer {KEY}"})


def records(client: TestClient) -> list[dict[str, str]]:
    redis = client.app.state.gateway.redis  # type: ignore[attr-defined]
    entries = client.portal.call(redis.xrange, keys.REQUESTS)  # type: ignore[union-attr]
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]


def assert_envelope(reply: Any, status: int, param: str | None = None) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == status
    assert error["message"]
    assert "Traceback" not in reply.text
    if param is not None:
        assert error["param"] == param
    return dict(error)
