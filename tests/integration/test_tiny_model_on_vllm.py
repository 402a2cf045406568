"""The built-in model on the real vLLM CPU server: it answers, as accurately as its build recorded, and
its sampled log-probs match transformers (+PEFT), with and without a LoRA on the vision tower."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

from adapter.digits.dataset import load_split
from adapter.digits.task import ANSWERS
from adapter.logprobs import completion_logprobs
from adapter.lora import LoraSpec, attach_lora
from adapter.tinymodel.batches import TaskInputs, preprocess
from adapter.tinymodel.card import ModelCard
from tests.integration.conftest import VllmServer
from tests.integration.helpers import chat, greedy_answer

# fp32 on both sides; differences come only from kernel summation order (seen: ~1e-6).
LOGPROB_TOLERANCE = 1e-4
ADAPTERS = {
    "lm-and-vision": LoraSpec(rank=8, language=True, vision=True),
    "vision-only": LoraSpec(rank=8, language=False),
}


@pytest.fixture(scope="module")
def lora_dirs(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """PEFT adapters with random (non-zero) A and B, so that they change what the model answers."""
    dirs = {}
    for name, spec in ADAPTERS.items():
        torch.manual_seed(1)
        peft_model = attach_lora(Qwen2VLForConditionalGeneration.from_pretrained(tiny_model), spec, False)
        dirs[name] = tmp_path_factory.mktemp("lora") / name
        peft_model.save_pretrained(dirs[name])
    return dirs


@pytest.fixture(scope="module")
def loaded(vllm_server: VllmServer, lora_dirs: dict[str, Path]) -> Iterator[dict[str, str]]:
    """The adapters loaded into the running vLLM at runtime, each under its own name."""
    names = {name: f"parity-{name}" for name in lora_dirs}
    with vllm_server.client() as client:
        for name, served in names.items():
            reply = client.post(
                "/v1/load_lora_adapter", json={"lora_name": served, "lora_path": str(lora_dirs[name])}
            )
            assert reply.status_code == 200, reply.text
        yield names
        for served in names.values():
            client.post("/v1/unload_lora_adapter", json={"lora_name": served})


def test_served_greedy_accuracy_matches_the_model_card(vllm_server: VllmServer, tiny_model: Path) -> None:
    recorded = ModelCard.read(tiny_model).accuracy["clean"].greedy
    digits = load_split("eval")
    with vllm_server.client() as client, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda im: greedy_answer(client, vllm_server.served_name, im), digits.images))
    assert set(answers) <= set(ANSWERS), f"non-digit answers: {set(answers) - set(ANSWERS)}"
    served = sum(a == str(y) for a, y in zip(answers, digits.labels, strict=True)) / len(digits)
    # Same weights, same fp32 arithmetic up to summation order: at most a handful of near-ties may flip.
    assert abs(served - recorded) <= 0.01, f"served {served:.3f} vs recorded {recorded:.3f}"
    assert served > 0.9


@pytest.mark.parametrize("adapter", [None, *ADAPTERS])
def test_sampled_logprobs_match_transformers(
    vllm_server: VllmServer,
    tiny_model: Path,
    lora_dirs: dict[str, Path],
    loaded: dict[str, str],
    adapter: str | None,
) -> None:
    processor = AutoProcessor.from_pretrained(tiny_model)
    task = TaskInputs.build(processor)
    model = Qwen2VLForConditionalGeneration.from_pretrained(tiny_model).eval()
    if adapter is not None:
        model = PeftModel.from_pretrained(model, lora_dirs[adapter]).eval()
    served_name = vllm_server.served_name if adapter is None else loaded[adapter]
    digits = load_split("eval")
    worst = 0.0
    checked = 0
    with vllm_server.client() as client:
        for i in range(4):
            reply = chat(
                client,
                served_name,
                digits.images[i],
                n=4,
                temperature=1.0,
                max_tokens=4,
                seed=i,
                logprobs=True,
            )
            assert reply["prompt_token_ids"] == task.prompt_ids.tolist(), (
                "vLLM and transformers tokenized differently"
            )
            completions = [c["token_ids"] for c in reply["choices"]]
            served = [[t["logprob"] for t in c["logprobs"]["content"]] for c in reply["choices"]]
            pixels = preprocess(processor, digits.images[i : i + 1])
            with torch.no_grad():
                ours = completion_logprobs(
                    model, task.prompt_ids, pixels.pixel_values, pixels.image_grid_thw, completions,
                    task.image_token_id, task.eos_id,
                )  # fmt: skip
            for vllm_lp, hf_lp in zip(served, ours, strict=True):
                assert len(vllm_lp) == len(hf_lp)
                worst = max(worst, float((torch.tensor(vllm_lp) - hf_lp).abs().max()))
                checked += len(vllm_lp)
    assert checked >= 16
    assert worst < LOGPROB_TOLERANCE, f"max |logprob vLLM - transformers| = {worst:.2e} over {checked} tokens"


@pytest.mark.parametrize("adapter", list(ADAPTERS))
def test_lora_loads_at_runtime_and_changes_answers(
    vllm_server: VllmServer, lora_dirs: dict[str, Path], adapter: str
) -> None:
    images = load_split("eval").images[:48]
    name = f"runtime-{adapter}"
    with vllm_server.client() as client:
        base_before = [greedy_answer(client, vllm_server.served_name, im) for im in images]
        reply = client.post(
            "/v1/load_lora_adapter", json={"lora_name": name, "lora_path": str(lora_dirs[adapter])}
        )
        assert reply.status_code == 200, reply.text
        assert name in {m["id"] for m in client.get("/v1/models").json()["data"]}
        with_lora = [greedy_answer(client, name, im) for im in images]
        base_after = [greedy_answer(client, vllm_server.served_name, im) for im in images]
        assert client.post("/v1/unload_lora_adapter", json={"lora_name": name}).status_code == 200
        gone = client.post(
            "/v1/chat/completions", json={"model": name, "messages": [{"role": "user", "content": "x"}]}
        )
    changed = sum(a != b for a, b in zip(base_before, with_lora, strict=True))
    assert changed > 0, "the adapter did not change a single answer: were its weights dropped?"
    assert base_after == base_before, "loading an adapter changed what the base model answers"
    assert gone.status_code == 404
