"""The built-in model's pieces, checked without pretraining: tokenizer, config, inputs, evaluation maths."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import Qwen2VLForConditionalGeneration

from adapter.digits.dataset import load_split
from adapter.digits.task import ANSWERS, PROMPT
from adapter.logprobs import completion_logprobs
from adapter.tinymodel.architecture import TinyArchitecture, build_processor, model_config
from adapter.tinymodel.batches import TaskInputs, preprocess
from adapter.tinymodel.evaluate import accuracy, answer_distribution
from adapter.tinymodel.tokenizer import train_tokenizer


@pytest.fixture(scope="module")
def parts() -> tuple[Qwen2VLForConditionalGeneration, TaskInputs, object]:
    arch = TinyArchitecture()
    tokenizer = train_tokenizer(PROMPT, arch.vocab_size)
    processor = build_processor(arch, tokenizer)
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(model_config(arch, tokenizer)).eval()
    return model, TaskInputs.build(processor), processor


def test_every_answer_is_one_token() -> None:
    tokenizer = train_tokenizer(PROMPT, 300)
    for answer in ANSWERS:
        assert len(tokenizer(answer, add_special_tokens=False)["input_ids"]) == 1
    assert len(tokenizer) == 300


def test_prompt_has_four_visual_tokens(
    parts: tuple[Qwen2VLForConditionalGeneration, TaskInputs, object],
) -> None:
    _, task, _ = parts
    assert int((task.prompt_ids == task.image_token_id).sum()) == 4


def test_answer_distribution_is_the_models_next_token_distribution(
    parts: tuple[Qwen2VLForConditionalGeneration, TaskInputs, object],
) -> None:
    model, task, processor = parts
    digits = load_split("eval")
    pixels = preprocess(processor, digits.images[:6])  # type: ignore[arg-type]
    probs = answer_distribution(model, task, pixels, batch_size=4)
    assert probs.shape == (6, model.config.text_config.vocab_size)
    torch.testing.assert_close(probs.sum(-1), torch.ones(6))
    # The log-prob of a one-token completion is the log of that same distribution.
    one = pixels.select(torch.tensor([2]))
    token = int(task.answer_ids[3])
    (lp,) = completion_logprobs(
        model,
        task.prompt_ids,
        one.pixel_values,
        one.image_grid_thw,
        [[token]],
        task.image_token_id,
        task.eos_id,
    )
    torch.testing.assert_close(lp.exp()[0], probs[2, token], rtol=1e-4, atol=1e-6)


def test_accuracy_reads_the_distribution(
    parts: tuple[Qwen2VLForConditionalGeneration, TaskInputs, object],
) -> None:
    _, task, _ = parts
    vocab = 300
    probs = torch.zeros(3, vocab)
    probs[0, task.answer_ids[1]] = 1.0  # certain and right
    probs[1, task.answer_ids[2]] = 0.6  # mostly right
    probs[1, task.answer_ids[5]] = 0.4
    probs[2, task.answer_ids[0]] = 1.0  # certain and wrong
    acc = accuracy(probs, task, torch.tensor([1, 2, 7]), seed=0)
    assert acc.greedy == pytest.approx(2 / 3)
    assert acc.per_sample == pytest.approx((1.0 + 0.6 + 0.0) / 3)
    assert 1 / 3 <= acc.majority_at_32 <= 2 / 3
    assert np.isfinite(acc.majority_at_32)
