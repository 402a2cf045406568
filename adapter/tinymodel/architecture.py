"""The built-in model: a real Qwen2-VL architecture, shrunk until it pretrains in a minute on 2 CPU cores.

Every size here is chosen to be valid for vLLM's CPU kernels as well as for transformers:
- head_dim 32 (128 / 4 heads); vLLM's CPU attention supports {32, 64, 80, ...}, not 16;
- mrope_section sums to head_dim / 2 (4 + 6 + 6 = 16);
- the vision tower's `hidden_size` (the merger's output) equals the language model's hidden size;
- 56 px images, 14 px patches, spatial merge 2: (56/14)^2 / 2^2 = 4 visual tokens per image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from transformers import (
    PreTrainedTokenizerFast,
    Qwen2VLConfig,
    Qwen2VLImageProcessorPil,
    Qwen2VLProcessor,
    Qwen2VLVideoProcessor,
)


@dataclass(frozen=True)
class TinyArchitecture:
    """Sizes of the built-in model. Changing any of them changes the model card's `recipe`."""

    text_hidden: int = 128
    text_layers: int = 4
    text_heads: int = 4
    text_kv_heads: int = 2
    text_intermediate: int = 512
    mrope_section: tuple[int, int, int] = (4, 6, 6)
    vision_depth: int = 2
    vision_embed: int = 64
    vision_heads: int = 2
    image_side: int = 56
    patch_size: int = 14
    spatial_merge: int = 2
    vocab_size: int = 300
    max_positions: int = 512

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def token_id(tokenizer: PreTrainedTokenizerFast, token: str) -> int:
    """The id of one token (transformers types the lookup as "an id or a list of ids")."""
    value = tokenizer.convert_tokens_to_ids(token)
    if not isinstance(value, int):
        raise TypeError(f"{token!r} maps to {value!r}, not one token id")
    return value


def model_config(arch: TinyArchitecture, tokenizer: PreTrainedTokenizerFast) -> Qwen2VLConfig:
    """A Qwen2VLConfig whose special-token ids point into the locally trained tokenizer."""
    ids = {t: token_id(tokenizer, t) for t in tokenizer.all_special_tokens}
    ids.update(
        {
            t: token_id(tokenizer, t)
            for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
        }
    )
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": arch.text_hidden,
        "intermediate_size": arch.text_intermediate,
        "num_hidden_layers": arch.text_layers,
        "num_attention_heads": arch.text_heads,
        "num_key_value_heads": arch.text_kv_heads,
        "max_position_embeddings": arch.max_positions,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": list(arch.mrope_section),
        },
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "tie_word_embeddings": False,
    }
    vision = {
        "depth": arch.vision_depth,
        "embed_dim": arch.vision_embed,
        "hidden_size": arch.text_hidden,
        "num_heads": arch.vision_heads,
        "mlp_ratio": 4,
        "patch_size": arch.patch_size,
        "spatial_merge_size": arch.spatial_merge,
        "temporal_patch_size": 2,
    }
    return Qwen2VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )


def build_processor(arch: TinyArchitecture, tokenizer: PreTrainedTokenizerFast) -> Qwen2VLProcessor:
    """Image processor pinned to one image size, so every image becomes the same 4 visual tokens."""
    pixels = arch.image_side * arch.image_side
    size = {"shortest_edge": pixels, "longest_edge": pixels}
    image_processor = Qwen2VLImageProcessorPil(
        size=size, patch_size=arch.patch_size, merge_size=arch.spatial_merge
    )
    video_processor = Qwen2VLVideoProcessor(
        size=size, patch_size=arch.patch_size, merge_size=arch.spatial_merge
    )
    return Qwen2VLProcessor(  # type: ignore[no-untyped-call]  # transformers leaves it untyped
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=tokenizer.chat_template,
    )
