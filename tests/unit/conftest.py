"""Fixtures of the gateway's unit tests: fakeredis, the fake engine, and a client of the app on both."""

from __future__ import annotations

from collections.abc import Iterator

import fakeredis
import pytest
from fastapi.testclient import TestClient

from tests.unit.fakes import FakeEngine
from tests.unit.gateway_app import client_for


@pytest.fixture
def redis() -> fakeredis.FakeAsyncRedis:
    return fakeredis.FakeAsyncRedis()


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def client(redis: fakeredis.FakeAsyncRedis, engine: FakeEngine) -> Iterator[TestClient]:
    with client_for(redis, engine) as c:
        yield c
