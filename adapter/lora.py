"""Which modules of a Qwen2-VL the adapter trains, as a PEFT LoRA that vLLM can serve as it is.

The served engine runs with `--enable-tower-connector-lora`, so an adapter may cover the vision tower and
its merger as well as the language model. Both matter: a LoRA on the language model alone cannot undo a
shift of the images. PEFT targets must be `nn.Linear` modules, hence the anchored regex (`merger.mlp.1` is
a GELU, not a Linear).
"""

from __future__ import annotations

from dataclasses import dataclass

from peft import LoraConfig, PeftModel, get_peft_model
from transformers import PreTrainedModel

LANGUAGE_TARGETS = r"model\.language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
VISION_TARGETS = r"model\.visual\.(blocks\.\d+\.(attn\.(qkv|proj)|mlp\.fc[12])|merger\.mlp\.[02])"


@dataclass(frozen=True)
class LoraSpec:
    rank: int = 8
    alpha: float = 16.0
    language: bool = True
    vision: bool = True

    def target_regex(self) -> str:
        parts = [p for p, on in ((LANGUAGE_TARGETS, self.language), (VISION_TARGETS, self.vision)) if on]
        if not parts:
            raise ValueError("a LoRA needs at least one of language=True or vision=True")
        return "^(" + "|".join(parts) + ")$"

    def config(self, init_lora_weights: bool = True) -> LoraConfig:
        return LoraConfig(
            r=self.rank,
            lora_alpha=self.alpha,  # type: ignore[arg-type]  # PEFT annotates int; any scale works
            target_modules=self.target_regex(),
            lora_dropout=0.0,
            bias="none",
            init_lora_weights=init_lora_weights,
        )


def attach_lora(model: PreTrainedModel, spec: LoraSpec, init_lora_weights: bool = True) -> PeftModel:
    """Wrap `model` with a fresh LoRA (zero update with the default init: B = 0)."""
    return get_peft_model(model, spec.config(init_lora_weights))
