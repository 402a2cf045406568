"""Property test over the gateway's OpenAPI schema: no input, valid or not, gets a 5xx.

Schemathesis generates requests from `/openapi.json` (both body types of `/v1/answer` included) and sends
them to the app in-process; the engine and Redis are fakes, so every 5xx would be the gateway's own fault.
"""

from __future__ import annotations

import fakeredis
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from server.app import create_app
from server.settings import GatewaySettings
from tests.unit.fakes import FakeEngine

AUTH = {"Authorization": "Bearer fuzz-key"}
ADMIN = {"Authorization": "Bearer fuzz-admin"}
app = create_app(
    GatewaySettings(api_keys=["fuzz-key"], admin_token="fuzz-admin", adapter_poll_s=0.05),
    redis=fakeredis.FakeAsyncRedis(),
    engine=FakeEngine(),  # type: ignore[arg-type]
)
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: schemathesis.Case) -> None:
    r = case.call_and_validate(headers=AUTH, checks=[not_a_server_error])
    print("STATUS", case.method, case.path, r.status_code)
