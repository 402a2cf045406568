"""The SDK's reply models are the server's: clients/wire.py is what `python -m stack.sdk_wire` generates
from core/wire.py, and every reply the gateway can send validates as the SDK model of that name."""

from __future__ import annotations

import ast

from clients import wire as sdk
from core import wire as server
from stack.sdk_wire import REPLY_MODELS, TARGET, annotation, sdk_wire_source


def test_generated_file_is_current() -> None:
    written, generated = ast.parse(TARGET.read_text()), ast.parse(sdk_wire_source())
    assert ast.dump(written) == ast.dump(generated), "run `python -m stack.sdk_wire` and commit the result"


def test_every_reply_model_has_the_same_fields_in_the_sdk() -> None:
    for model in REPLY_MODELS:
        twin = getattr(sdk, model.__name__)
        assert list(twin.model_fields) == list(model.model_fields), model.__name__
        for name, field in model.model_fields.items():
            assert annotation(twin.model_fields[name]) == annotation(field), f"{model.__name__}.{name}"
            assert twin.model_fields[name].is_required() == field.is_required(), f"{model.__name__}.{name}"


def test_a_server_reply_round_trips_through_the_sdk_and_extra_fields_are_ignored() -> None:
    reply = server.AdapterList(
        current=2,
        versions=[server.AdapterInfo(version=2, status="promoted", parent=1, metrics={"reward": 0.5})],
        history=[server.AdapterMove(version=2, previous=1, kind="promote", reason="gate", ts=1.0)],
    )
    body = reply.model_dump()
    body["versions"][0]["future_field"] = "ignored"
    parsed = sdk.AdapterList.model_validate(body)
    assert parsed.model_dump() == reply.model_dump()
