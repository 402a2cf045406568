"""LoRA targets are configurable, and a pattern that matches no Linear module stops the worker at start
(instead of a model whose vision MLP, say, is silently never adapted)."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch import nn

from adapter.lora import (
    LANGUAGE_TARGETS,
    VISION_TARGETS,
    LoraSpec,
    TargetsError,
    check_model_targets,
    check_targets,
)
from adapter.tinymodel.architecture import TinyArchitecture, model_config
from adapter.tinymodel.tokenizer import train_tokenizer


def named(*names: str) -> nn.Module:
    """A module tree with a Linear at each dotted name."""
    root = nn.Module()
    for name in names:
        parent = root
        *path, leaf = name.split(".")
        for part in path:
            if not hasattr(parent, part):
                parent.add_module(part, nn.Module())
            parent = getattr(parent, part)
        parent.add_module(leaf, nn.Linear(2, 2))
    return root


QWEN25_VISION = named(
    "model.visual.blocks.0.attn.qkv",
    "model.visual.blocks.0.attn.proj",
    "model.visual.blocks.0.mlp.gate_proj",
    "model.visual.blocks.0.mlp.up_proj",
    "model.visual.blocks.0.mlp.down_proj",
    "model.visual.merger.mlp.0",
    "model.visual.merger.mlp.2",
)


def test_qwen2_5_vl_vision_mlp_names_are_caught_not_skipped() -> None:
    with pytest.raises(TargetsError, match=r"mlp\\\\.fc\[12\].*model.visual.blocks.N.mlp.gate_proj"):
        check_targets(QWEN25_VISION, VISION_TARGETS)
    own = (*VISION_TARGETS[:1], r"model\.visual\.blocks\.\d+\.mlp\.(gate|up|down)_proj", VISION_TARGETS[2])
    check_targets(QWEN25_VISION, own)  # the user's own patterns: every one matches


def test_the_spec_uses_given_targets_instead_of_the_defaults() -> None:
    assert LoraSpec().patterns() == LANGUAGE_TARGETS + VISION_TARGETS
    assert LoraSpec(vision=False).patterns() == LANGUAGE_TARGETS
    assert LoraSpec(targets=("a\\.b",)).target_regex() == "^(a\\.b)$"


def test_the_built_in_model_is_checked_from_its_config_alone(tmp_path: Path) -> None:
    arch = TinyArchitecture()
    model_config(arch, train_tokenizer("Which digit?", arch.vocab_size)).save_pretrained(tmp_path)
    check_model_targets(tmp_path, LoraSpec())  # the defaults fit Qwen2-VL
    with pytest.raises(TargetsError, match="gate_proj"):
        check_model_targets(tmp_path, LoraSpec(targets=(r"model\.visual\.blocks\.\d+\.mlp\.gate_proj",)))
