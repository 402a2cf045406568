"""The `ttrv` client commands against a fake gateway: output, admin token, red errors without a traceback."""

from __future__ import annotations

import base64
import functools
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from clients.sdk import AsyncTTRVClient, TTRVClient
from clients.settings import ClientSettings
from stack import cli

ANSWER = {"id": "r1", "answer": "7", "text": "7", "adapter_version": 3, "confidence": 0.75, "latency_ms": 4.2}
REGISTRY = {
    "current": 1,
    "versions": [{"version": 0, "status": "base"}, {"version": 1, "status": "promoted", "parent": 0}],
}


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[httpx.Request]:
    """Route the CLI's clients to a fake gateway; returns the requests it received."""
    requests: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        path = request.url.path
        if path == "/v1/answer":
            image = base64.b64decode(json.loads(request.content)["image"])
            if image == b"bad":
                error = {
                    "error": {"message": "unreadable image: send a PNG or JPEG", "type": "invalid_image"}
                }
                return httpx.Response(400, json=error)
            return httpx.Response(200, json=ANSWER | {"answer": image.decode()})
        if path in ("/v1/adapters", "/v1/adapters/1/promote"):
            return httpx.Response(200, json=REGISTRY)
        return httpx.Response(200, json={"paused": path.endswith("pause")})

    settings = ClientSettings(url="http://gateway.test", api_key=None, admin_token=None)
    transport = httpx.MockTransport(handle)
    options: dict[str, Any] = {"settings": settings, "transport": transport, "max_retries": 0}
    monkeypatch.setattr(cli, "TTRVClient", functools.partial(TTRVClient, **options))
    monkeypatch.setattr(cli, "AsyncTTRVClient", functools.partial(AsyncTTRVClient, **options))
    return requests


def image(tmp_path: Path, content: bytes) -> str:
    path = tmp_path / "digit.png"
    path.write_bytes(content)
    return str(path)


def test_answer_prints_the_answer_and_sends_the_options(tmp_path: Path, seen: list[httpx.Request]) -> None:
    args = ["answer", image(tmp_path, b"4"), "Which?", "-o", "cat", "--option", "dog", "--samples", "3"]
    result = CliRunner().invoke(cli.app, [*args, "--api-key", "k1"])
    assert result.exit_code == 0, result.output
    assert "4" in result.output
    assert "adapter v3" in result.output
    sent = json.loads(seen[0].content)
    assert (sent["options"], sent["samples"]) == (["cat", "dog"], 3)
    assert seen[0].headers["Authorization"] == "Bearer k1"


def test_answer_json_prints_the_reply(tmp_path: Path, seen: list[httpx.Request]) -> None:
    result = CliRunner().invoke(cli.app, ["answer", image(tmp_path, b"4"), "Which?", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == ANSWER | {"answer": "4"}


def test_a_server_error_is_a_message_and_exit_1_without_traceback(
    tmp_path: Path, seen: list[httpx.Request]
) -> None:
    result = CliRunner().invoke(cli.app, ["answer", image(tmp_path, b"bad"), "Which?"])
    assert result.exit_code == 1
    assert "unreadable image: send a PNG or JPEG" in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


def test_promote_sends_the_admin_token_and_prints_the_registry(seen: list[httpx.Request]) -> None:
    result = CliRunner().invoke(cli.app, ["promote", "1", "--admin-token", "adm"])
    assert result.exit_code == 0, result.output
    assert seen[0].url.path == "/v1/adapters/1/promote"
    assert seen[0].headers["Authorization"] == "Bearer adm"
    assert "v1 *" in result.output


@pytest.mark.parametrize("command", ["pause", "resume"])
def test_pause_and_resume(command: str, seen: list[httpx.Request]) -> None:
    result = CliRunner().invoke(cli.app, [command, "--admin-token", "adm"])
    assert result.exit_code == 0, result.output
    assert seen[0].url.path == f"/v1/adaptation/{command}"
    assert json.loads(result.output) == {"paused": command == "pause"}


def test_adapters_lists_versions(seen: list[httpx.Request]) -> None:
    result = CliRunner().invoke(cli.app, ["adapters"])
    assert result.exit_code == 0, result.output
    assert "promoted" in result.output
    assert "current: v1" in result.output


def test_replay_prints_the_report(tmp_path: Path, seen: list[httpx.Request]) -> None:
    (tmp_path / "images").mkdir()
    lines = []
    for i, answer in enumerate(["1", "2", "3"]):
        (tmp_path / "images" / f"{i}.png").write_text(answer)
        lines.append(
            json.dumps({"id": str(i), "prompt": "q", "image_path": f"images/{i}.png", "answer": "1"})
        )
    (tmp_path / "adapt.jsonl").write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(cli.app, ["replay", str(tmp_path / "adapt.jsonl"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["sent"], report["answered"]) == (3, 3)
    assert report["accuracy"] == {"3": {"n": 3, "correct": 1}}


def test_replay_reports_a_bad_line_with_its_place(tmp_path: Path, seen: list[httpx.Request]) -> None:
    (tmp_path / "adapt.jsonl").write_text("{oops\n")
    result = CliRunner().invoke(cli.app, ["replay", str(tmp_path / "adapt.jsonl")])
    assert result.exit_code == 1
    assert "adapt.jsonl:1" in result.output
    assert "Traceback" not in result.output
