"""A task's own answer extractor and reward, given by configuration (core/plugins.py): used by the gateway's
vote and feedback, the rounds' rewards, the gate and the labeled accuracy; a wrong path stops start-up with
a message that names the setting."""

from __future__ import annotations

import asyncio
import os
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from pydantic import ValidationError

from adapter.labeled import Evaluator, LabeledItem
from adapter.round import Rollout, RoundConfig, build_groups
from adapter.settings import WorkerSettings
from adapter.worker import build_worker
from core.routing import AdapterEngine, Route
from server.settings import GatewaySettings
from tests.unit.fakes import FakeEngine, png
from tests.unit.gateway_app import client_for

EXTRACTOR = "tests.unit.plugins:first_word"
REWARD = "tests.unit.plugins:unanimity"
ROOT = Path(__file__).parents[2]
TEXTS = ["Seven apples", "seven.", "eight", "nine"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("tests.unit.nowhere:first_word", "cannot import module 'tests.unit.nowhere'"),
        ("tests.unit.plugins:missing", "has no function 'missing'"),
        ("tests.unit.plugins:NOT_CALLABLE", "has no function 'NOT_CALLABLE'"),
        ("first_word", "is neither a built-in (default, exact) nor package.module:function"),
    ],
)
def test_a_wrong_extractor_is_refused_naming_the_setting(spec: str, message: str) -> None:
    for settings in (GatewaySettings, WorkerSettings):
        with pytest.raises(
            ValidationError, match=re.escape(f"TTRV_ANSWER_EXTRACTOR={spec!r}") + ".*" + re.escape(message)
        ):
            settings(answer_extractor=spec)


def test_a_wrong_reward_is_refused_and_a_good_one_accepted() -> None:
    with pytest.raises(ValidationError, match=re.escape("TTRV_REWARD='tests.unit.plugins:missing'")):
        WorkerSettings(reward="tests.unit.plugins:missing")
    assert WorkerSettings(reward=REWARD, answer_extractor=EXTRACTOR).reward == REWARD


@pytest.mark.parametrize(
    ("module", "variable"), [("server", "TTRV_ANSWER_EXTRACTOR"), ("adapter", "TTRV_REWARD")]
)
def test_a_process_with_a_wrong_path_stops_at_start_and_says_which_setting(
    module: str, variable: str
) -> None:
    env = {**os.environ, variable: "no_such_package.rules:fn", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", module], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 2, done.stderr
    assert f"{variable}: {variable}='no_such_package.rules:fn': cannot import module" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_gateway_votes_and_scores_feedback_with_the_configured_extractor(
    tmp_path: Path,
) -> None:
    engine = FakeEngine(replies=[TEXTS[:3]])
    with client_for(fakeredis.FakeAsyncRedis(), engine, answer_extractor=EXTRACTOR) as client:
        body: dict[str, Any] = {
            "image": __import__("base64").b64encode(png()).decode(),
            "question": "How many?",
        }
        served = client.post("/v1/answer", json={**body, "samples": 3}).json()
        assert (served["answer"], served["confidence"]) == ("seven", pytest.approx(2 / 3))
        feedback = client.post("/v1/feedback", json={"id": served["id"], "label": "SEVEN."})
        assert feedback.json()["correct"] is True


def test_rounds_reward_and_vote_with_the_configured_extractor_and_reward() -> None:
    rollout = Rollout(prompt=None, completions=[[1]] * 4, texts=TEXTS, options=None)  # type: ignore[arg-type]
    custom = RoundConfig(keep=4, reward=REWARD, extractor=EXTRACTOR)
    _, stats = build_groups([rollout], custom, random.Random(0))
    assert stats.agreement_mean == 0.5  # "Seven apples" and "seven." are one answer
    assert stats.reward_mean == 0.5  # unanimity: 1, 1, 0, 0
    _, default = build_groups([rollout], RoundConfig(keep=4), random.Random(0))
    assert default.agreement_mean == 0.25  # four different answers to the default extractor


def test_the_gate_and_labeled_accuracy_read_answers_with_it(tmp_path: Path) -> None:
    settings = WorkerSettings(adapter_dir=tmp_path, answer_extractor=EXTRACTOR)
    worker = build_worker(settings, redis=fakeredis.FakeAsyncRedis(), engine=FakeEngine())  # type: ignore[arg-type]
    rollout = Rollout(prompt=None, completions=[[1]] * 4, texts=TEXTS, options=None)  # type: ignore[arg-type]
    assert worker._slice([rollout]).agreement == 0.5

    item = LabeledItem("k", png(), "How many?", None, "seven")
    base = Route(0, "base", None)
    engine = AdapterEngine(FakeEngine(replies=[["Seven apples"]]))  # type: ignore[arg-type]
    assert asyncio.run(Evaluator(engine, 4, extract=worker.extract).correct(base, [item])) == [True]
    assert asyncio.run(Evaluator(engine, 4).correct(base, [item])) == [False]
