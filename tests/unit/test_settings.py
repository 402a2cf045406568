"""Settings refuse combinations that cannot work, with a message that names the variable to change."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from adapter.settings import WorkerSettings
from server.settings import GatewaySettings


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"keep": 20, "samples": 16}, "set TTRV_KEEP to at most TTRV_SAMPLES"),
        ({"round_min_records": 200, "round_max_records": 128}, "TTRV_ROUND_MIN_RECORDS=200 is more than"),
        ({"gate_share": 1.0}, "TTRV_GATE_SHARE=1.0"),
        ({"accuracy_tolerance": 2.0}, "are accuracies (0..1)"),
        ({"min_gain_over_base": 3}, "are accuracies (0..1)"),
        ({"replay_share": -1}, "TTRV_REPLAY_SHARE=-1.0 must be >= 0"),
        ({"lr": 0}, "greater than 0"),
    ],
)
def test_worker_settings_refuse_what_cannot_work(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        WorkerSettings(**values)  # type: ignore[arg-type]


def test_worker_defaults_are_consistent() -> None:
    s = WorkerSettings()
    assert s.keep <= s.samples
    assert s.round_min_records <= s.round_max_records


def test_gateway_settings_refuse_an_admin_token_that_is_an_api_key() -> None:
    with pytest.raises(ValidationError, match="give the admin token its own value"):
        GatewaySettings(api_keys=["k"], admin_token="k")
    with pytest.raises(ValidationError, match="TTRV_RATE_LIMIT_BURST=0"):
        GatewaySettings(rate_limit_per_s=5.0, rate_limit_burst=0)
    assert GatewaySettings(api_keys=["k"], admin_token="a").admin_token == "a"
