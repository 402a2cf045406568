"""The training copy of the served model: transformers + a PEFT LoRA, on the same weights vLLM serves.

It turns an (image, question) into exactly the prompt vLLM builds (same chat template, same processor), so
log-probs of vLLM's samples can be recomputed here (tests/integration: parity within 1e-4). The reference
model for the KL term is the same network with the adapter disabled: no second copy in memory.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import PeftModel
from PIL import Image
from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

from adapter.logprobs import completion_logprobs
from adapter.lora import LoraSpec, attach_lora


@dataclass
class Prompt:
    """One model input: the chat prompt's token ids and its image's patches."""

    ids: torch.Tensor  # (L,)
    pixel_values: torch.Tensor
    image_grid_thw: torch.Tensor


def load_image(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


class Policy:
    def __init__(self, model_dir: Path, spec: LoraSpec, adapter: Path | None = None, seed: int = 0):
        """The base model at `model_dir` with a LoRA: loaded from `adapter` (a version folder) or fresh."""
        torch.manual_seed(seed)
        # fp32 on CPU; bf16 where a GPU is used (the served engine's dtype should then match).
        dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        base = Qwen2VLForConditionalGeneration.from_pretrained(model_dir, dtype=dtype).to(self.device)
        self.processor = AutoProcessor.from_pretrained(model_dir)
        if adapter is None:
            self.model: PeftModel = attach_lora(base, spec)
        else:
            self.model = PeftModel.from_pretrained(base, adapter, is_trainable=True)
        self.model.eval()  # no dropout: rollouts, old log-probs and the update must see the same function
        tokenizer = self.processor.tokenizer
        self.image_token_id = int(self.processor.image_token_id)
        self.pad_id = int(
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )
        self.eos_id = int(tokenizer.eos_token_id)

    def prompt(self, image: Image.Image, question: str) -> Prompt:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        batch = self.processor(text=[text], images=[image], return_tensors="pt")
        return Prompt(
            batch["input_ids"][0].to(self.device),
            batch["pixel_values"].to(self.device),
            batch["image_grid_thw"].to(self.device),
        )

    def logprobs(
        self, prompt: Prompt, completions: list[list[int]], reference: bool = False
    ) -> list[torch.Tensor]:
        """Per-token log-probs of `completions`; with `reference`, under the base model (adapter off)."""

        def run() -> list[torch.Tensor]:
            return completion_logprobs(
                self.model, prompt.ids, prompt.pixel_values, prompt.image_grid_thw,
                completions, self.image_token_id, self.pad_id,
            )  # fmt: skip

        if not reference:
            return run()
        with self.model.disable_adapter():
            return run()

    @torch.no_grad()
    def sample(
        self,
        prompt: Prompt,
        n: int,
        temperature: float,
        max_new_tokens: int,
        generator: torch.Generator | None = None,
    ) -> list[list[int]]:
        """`n` completions drawn from the policy itself (in-process rollouts for offline runs and benchmarks).

        A plain loop that re-runs the whole sequence each step, without a KV cache: answers here are a few
        tokens long, and it keeps the inputs exactly those of `logprobs`. Temperature 0 is greedy.
        """
        done: list[list[int]] = [[] for _ in range(n)]
        for _ in range(max_new_tokens):
            open_rows = [i for i, c in enumerate(done) if not c or c[-1] != self.eos_id]
            if not open_rows:
                break
            logits = self._next_token_logits(prompt, [done[i] for i in open_rows])
            if temperature <= 0:
                picked = logits.argmax(-1)
            else:
                probs = torch.softmax(logits.float() / temperature, dim=-1)
                picked = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
            for row, token in zip(open_rows, picked.tolist(), strict=True):
                done[row].append(int(token))
        return done

    def _next_token_logits(self, prompt: Prompt, partial: list[list[int]]) -> torch.Tensor:
        n, length = len(partial), prompt.ids.shape[0]
        width = max(len(p) for p in partial)
        ids = torch.full((n, length + width), self.pad_id, dtype=torch.long, device=self.device)
        ids[:, :length] = prompt.ids
        mask = torch.zeros_like(ids)
        mask[:, :length] = 1
        for i, p in enumerate(partial):
            ids[i, length : length + len(p)] = torch.tensor(p, dtype=torch.long)
            mask[i, length : length + len(p)] = 1
        types = torch.zeros_like(ids)
        types[:, :length] = (prompt.ids == self.image_token_id).long()
        logits = self.model(
            input_ids=ids,
            attention_mask=mask,
            mm_token_type_ids=types,
            pixel_values=prompt.pixel_values.repeat(n, 1),
            image_grid_thw=prompt.image_grid_thw.repeat(n, 1),
        ).logits
        last = torch.tensor([length + len(p) - 1 for p in partial], device=self.device)
        return logits[torch.arange(n, device=self.device), last]

    def decode(self, completion: list[int]) -> str:
        return str(self.processor.tokenizer.decode(completion, skip_special_tokens=True))

    def save(self, path: Path) -> None:
        self.model.save_pretrained(path)
