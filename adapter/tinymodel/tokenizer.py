"""A byte-level BPE tokenizer trained in memory, with Qwen2-VL's special tokens and chat template.

No model hub is reachable, so the built-in model's tokenizer is trained locally on a small corpus of the
text it will see (prompts, digits, chat markup). Digits are single bytes and therefore single tokens, which
makes every answer of the built-in task exactly one token.
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

# The names Qwen2-VL's processor and vLLM's qwen2_vl model look up; order fixes their ids.
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Qwen-style chat template without the default system prompt (it would only lengthen every sequence).
# Content may be a string or a list of {"type": "image"|"image_url"|"text"} parts, as vLLM's OpenAI
# front end and transformers' processors both pass it.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] in ('image', 'image_url') %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def training_corpus(prompt: str) -> list[str]:
    """Text the tokenizer is fitted on: the prompt, chat roles, digits and a little plain English."""
    digits = [str(d) for d in range(10)]
    return [
        prompt,
        "user\n",
        "assistant\n",
        "system\n",
        " ".join(digits),
        "Answer with one digit. Answer with one letter. Which digit is shown? Options: A. B. C. D.",
        "Look at the given image and identify what it shows. Choose the correct answer.",
    ] * 4 + digits


def train_tokenizer(prompt: str, vocab_size: int) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE of `vocab_size` tokens (special tokens included) on the task's text."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(training_corpus(prompt), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]  # transformers leaves it untyped
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
        model_max_length=512,
    )
    return tokenizer
