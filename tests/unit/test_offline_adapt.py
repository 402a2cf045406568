"""`ttrv adapt`'s protocol on a few real rows: it adapts (the LoRA moves) and scores before and after."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from transformers import Qwen2VLForConditionalGeneration

from adapter.digits.dataset import Digits, stream_split, write_rows
from adapter.lora import LoraSpec
from adapter.offline import AdaptConfig, adapt, greedy_accuracy, prompts_for, read_rows
from adapter.policy import Policy
from adapter.tinymodel.architecture import TinyArchitecture, build_processor, model_config
from adapter.tinymodel.tokenizer import train_tokenizer


@pytest.fixture(scope="module")
def random_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny model (no pretraining): enough to exercise the protocol's mechanics."""
    arch = TinyArchitecture()
    tokenizer = train_tokenizer("Which digit is shown? Answer with one digit.", arch.vocab_size)
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(model_config(arch, tokenizer))
    folder = tmp_path_factory.mktemp("model")
    model.save_pretrained(folder)
    build_processor(arch, tokenizer).save_pretrained(folder)
    return folder


def test_adapt_moves_the_lora_and_scores(random_model: Path, tmp_path: Path) -> None:
    digits = stream_split("adapt", "contrast", 3, seed=0)
    rows = read_rows(
        write_rows(Digits(digits.images[:8], digits.labels[:8]), tmp_path, "contrast-3", "adapt")
    )
    policy = Policy(random_model, LoraSpec(rank=4))
    prompts = prompts_for(policy, rows)
    cfg = AdaptConfig(records_per_round=4, passes=1, samples=6, max_new_tokens=1)
    cfg = dataclasses.replace(cfg, round=dataclasses.replace(cfg.round, keep=3, lr=1e-2))
    lora_b = [p.detach().clone() for n, p in policy.model.named_parameters() if "lora_B" in n]
    history = adapt(policy, prompts, cfg, seed=0)
    assert len(history) == -(-len(rows) // cfg.records_per_round)
    assert all(0.0 <= s.agreement_mean <= 1.0 for s in history)
    moved = [p for n, p in policy.model.named_parameters() if "lora_B" in n]
    if any(s.steps for s in history):
        assert any(not torch.equal(a, b) for a, b in zip(lora_b, moved, strict=True)), (
            "no update reached the LoRA"
        )
    accuracy = greedy_accuracy(policy, prompts, rows, max_new_tokens=1)
    assert 0.0 <= accuracy <= 1.0
