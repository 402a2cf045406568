"""The training copy of the served model: transformers + a PEFT LoRA, on the same weights vLLM serves.

It turns an (image, question) into exactly the prompt vLLM builds (same chat template, same processor), so
log-probs of vLLM's samples can be recomputed here (tests/integration: parity within 1e-4). The reference
model for the KL term is the same network with the adapter disabled: no second copy in memory.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import torch
from peft import PeftModel
from PIL import Image
from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

from adapter.logprobs import Prompt, Row, batch_inputs, buckets, row_logprobs, unique_rows
from adapter.lora import LoraSpec, attach_lora


def load_image(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


class Policy:
    def __init__(
        self, model_dir: Path, spec: LoraSpec, adapter: Path | None = None, seed: int = 0, max_rows: int = 512
    ):
        """The base model at `model_dir` with a LoRA: loaded from `adapter` (a version folder) or fresh."""
        torch.manual_seed(seed)
        # fp32 on CPU; bf16 where a GPU is used (the served engine's dtype should then match).
        dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        loaded = Qwen2VLForConditionalGeneration.from_pretrained(model_dir, dtype=dtype)
        base = loaded.to(self.device)  # type: ignore[arg-type]  # transformers types .to() for dtypes only
        self.processor = AutoProcessor.from_pretrained(model_dir)  # type: ignore[no-untyped-call]
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
        self.vocab_size = int(self.model.get_output_embeddings().weight.shape[0])
        self.max_rows = max_rows  # rows per forward pass; bounds activation memory
        # Vision placeholders are never an answer, and a sampled one would break the next forward pass
        # (the model counts image tokens to place image features), so sampling never draws them.
        cfg = self.model.config
        self.suppressed = sorted(
            {cfg.image_token_id, cfg.video_token_id, cfg.vision_start_token_id, cfg.vision_end_token_id}
        )

    def prompt(self, image: Image.Image, question: str) -> Prompt:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        batch = self.processor(text=[text], images=[image], return_tensors="pt")
        return Prompt(
            batch["input_ids"][0].to(self.device),
            batch["pixel_values"].to(self.device),
            batch["image_grid_thw"].to(self.device),
        )

    def logprobs(self, rows: Sequence[Row], reference: bool = False) -> list[torch.Tensor]:
        """Per-token log-probs of each (prompt, completion); with `reference`, under the base model."""
        if not reference:
            return row_logprobs(self.model, rows, self.image_token_id, self.pad_id, self.max_rows)
        with self.model.disable_adapter():
            return row_logprobs(self.model, rows, self.image_token_id, self.pad_id, self.max_rows)

    @torch.no_grad()
    def sample(
        self,
        prompts: Sequence[Prompt],
        n: int,
        temperature: float,
        max_new_tokens: int,
        generator: torch.Generator | None = None,
    ) -> list[list[list[int]]]:
        """`n` completions of each prompt, drawn from the policy itself (in-process rollouts).

        A plain loop over steps, without a KV cache, batching every unfinished row of every prompt: answers
        here are a few tokens long, and the inputs stay exactly those `logprobs` scores. Temperature 0 is
        greedy. Each completion ends with the end-of-turn token when the model emitted it.
        """
        rows: list[tuple[Prompt, list[int]]] = [(p, []) for p in prompts for _ in range(n)]
        for _ in range(max_new_tokens):
            open_rows = [i for i, (_, c) in enumerate(rows) if not c or c[-1] != self.eos_id]
            if not open_rows:
                break
            logits = self._next_token_logits([rows[i] for i in open_rows])
            logits[:, self.suppressed] = float("-inf")
            if temperature <= 0:
                picked = logits.argmax(-1)
            else:
                probs = torch.softmax(logits / temperature, dim=-1)
                picked = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
            for i, token in zip(open_rows, picked.tolist(), strict=True):
                rows[i][1].append(int(token))
        return [[rows[k * n + j][1] for j in range(n)] for k in range(len(prompts))]

    def _next_token_logits(self, rows: Sequence[Row]) -> torch.Tensor:
        """Next-token logits of each row; identical rows (all n at the first step) are run once."""
        distinct, where = unique_rows(rows)
        out = torch.empty(len(distinct), self.vocab_size, device=self.device)
        for idx in buckets(distinct, self.max_rows):
            inputs = batch_inputs([distinct[i] for i in idx], self.image_token_id, self.pad_id)
            logits = self.model(**inputs).logits
            last = inputs["attention_mask"].sum(-1) - 1
            out[idx] = logits[torch.arange(len(idx), device=self.device), last].float()
        return out[torch.tensor(where, device=self.device)]

    def decode(self, completion: Sequence[int]) -> str:
        return str(self.processor.tokenizer.decode(list(completion), skip_special_tokens=True))

    def save(self, path: Path) -> None:
        self.model.save_pretrained(str(path))
