"""Which modules of the model the adapter trains, as a PEFT LoRA that vLLM can serve as it is.

The served engine runs with `--enable-tower-connector-lora`, so an adapter may cover the vision tower and
its merger as well as the language model. Both matter: a LoRA on the language model alone cannot undo a
shift of the images. PEFT targets must be `nn.Linear` modules, hence anchored patterns (`merger.mlp.1` is
a GELU, not a Linear).

The defaults are Qwen2-VL's module names. Another model names its modules differently (Qwen2.5-VL's vision
blocks have `mlp.gate_proj/up_proj/down_proj`, not `mlp.fc1/fc2`): `TTRV_LORA_TARGETS` gives the patterns,
and `check_targets` refuses to start when a pattern matches no Linear module, rather than train without it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn
from transformers import AutoConfig, AutoModelForImageTextToText, PreTrainedModel

# Each pattern must match at least one Linear module (check_targets); together they are the LoRA's targets.
LANGUAGE_TARGETS = (
    r"model\.language_model\.layers\.\d+\.self_attn\.(q|k|v|o)_proj",
    r"model\.language_model\.layers\.\d+\.mlp\.(gate|up|down)_proj",
)
VISION_TARGETS = (
    r"model\.visual\.blocks\.\d+\.attn\.(qkv|proj)",
    r"model\.visual\.blocks\.\d+\.mlp\.fc[12]",
    r"model\.visual\.merger\.mlp\.[02]",
)


class TargetsError(ValueError):
    """A LoRA target pattern that matches no Linear module of the model."""


@dataclass(frozen=True)
class LoraSpec:
    rank: int = 8
    alpha: float = 16.0
    language: bool = True
    vision: bool = True
    targets: tuple[str, ...] | None = None  # patterns replacing the defaults of `language` and `vision`

    def patterns(self) -> tuple[str, ...]:
        if self.targets is not None:
            return self.targets
        parts = (LANGUAGE_TARGETS if self.language else ()) + (VISION_TARGETS if self.vision else ())
        if not parts:
            raise ValueError("a LoRA needs at least one of language=True or vision=True")
        return parts

    def target_regex(self) -> str:
        return "^(" + "|".join(self.patterns()) + ")$"

    def config(self, init_lora_weights: bool = True) -> LoraConfig:
        return LoraConfig(
            r=self.rank,
            lora_alpha=self.alpha,  # type: ignore[arg-type]  # PEFT annotates int; any scale works
            target_modules=self.target_regex(),
            lora_dropout=0.0,
            bias="none",
            init_lora_weights=init_lora_weights,
        )


def check_targets(model: nn.Module, patterns: Sequence[str]) -> None:
    """Raise `TargetsError` naming every pattern that matches no Linear module, with the Linear modules
    there are (a few of each shape of name), so the fix is to read off the message."""
    linear = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    missing = [p for p in patterns if not any(re.fullmatch(p, name) for name in linear)]
    if missing:
        shapes = sorted({re.sub(r"\.\d+\.", ".N.", name) for name in linear})
        raise TargetsError(
            f"LoRA target pattern(s) {missing} match no Linear module of this model, so that part would not "
            f"be adapted; set TTRV_LORA_TARGETS to patterns of its Linear modules, which are: {shapes[:40]}"
        )


def check_model_targets(model_dir: Path, spec: LoraSpec) -> None:
    """`check_targets` on the model at `model_dir`, built on the meta device from its config alone: no
    weights are read, so the worker can check at start, for any model size, before its first round."""
    config = AutoConfig.from_pretrained(model_dir)
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)  # type: ignore[no-untyped-call]
    check_targets(model, spec.patterns())


def attach_lora(model: PreTrainedModel, spec: LoraSpec, init_lora_weights: bool = True) -> PeftModel:
    """Wrap `model` with a fresh LoRA (zero update with the default init: B = 0), after `check_targets`."""
    check_targets(model, spec.patterns())
    return get_peft_model(model, spec.config(init_lora_weights))
