"""Model inputs for the built-in task: one fixed prompt, one image, a one-token answer.

Every prompt is the same chat turn with exactly four visual tokens, so a batch needs no padding: the
prompt's token ids are tokenized once and repeated, and the images are preprocessed once up front.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image
from transformers import Qwen2VLProcessor

from adapter.digits.task import ANSWERS, PROMPT


def chat_messages(prompt: str = PROMPT) -> list[dict[str, object]]:
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]


@dataclass
class PixelBatch:
    """Preprocessed images: `pixel_values` holds `patches_per_image` rows per image."""

    pixel_values: torch.Tensor
    image_grid_thw: torch.Tensor
    patches_per_image: int

    def select(self, idx: torch.Tensor) -> PixelBatch:
        rows = (idx[:, None] * self.patches_per_image + torch.arange(self.patches_per_image)).reshape(-1)
        return PixelBatch(self.pixel_values[rows], self.image_grid_thw[idx], self.patches_per_image)


@dataclass
class TaskInputs:
    """Everything the model needs for the built-in task, computed once."""

    prompt_ids: torch.Tensor  # (L,) chat prompt ending in "assistant\n", image pads expanded
    image_token_id: int
    answer_ids: torch.Tensor  # (10,) token id of each digit
    eos_id: int

    @classmethod
    def build(cls, processor: Qwen2VLProcessor, prompt: str = PROMPT) -> TaskInputs:
        text = processor.apply_chat_template(
            chat_messages(prompt),  # type: ignore[arg-type]  # typed as text-only messages; images are allowed
            add_generation_prompt=True,
            tokenize=False,
        )
        blank = Image.new("RGB", (56, 56))
        ids = processor(text=[text], images=[blank], return_tensors="pt")["input_ids"][0]
        tok = processor.tokenizer
        answer_ids = torch.tensor([tok.convert_tokens_to_ids(a) for a in ANSWERS])
        return cls(
            ids, int(processor.image_token_id), answer_ids, int(tok.convert_tokens_to_ids("<|im_end|>"))
        )

    def model_inputs(
        self, pixels: PixelBatch, completion: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Forward kwargs for a batch: the prompt repeated, followed by `completion` (B, T) if given."""
        n = pixels.image_grid_thw.shape[0]
        ids = self.prompt_ids.expand(n, -1)
        if completion is not None:
            ids = torch.cat([ids, completion], dim=1)
        return {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "mm_token_type_ids": (ids == self.image_token_id).long(),
            "pixel_values": pixels.pixel_values,
            "image_grid_thw": pixels.image_grid_thw,
        }


def preprocess(processor: Qwen2VLProcessor, images: NDArray[np.uint8]) -> PixelBatch:
    """Run the image processor once over uint8 images (N, H, W, 3)."""
    out = processor.image_processor(images=[Image.fromarray(im) for im in images], return_tensors="pt")
    grid = out["image_grid_thw"]
    per_image = int(grid[0].prod())
    return PixelBatch(out["pixel_values"], grid, per_image)
