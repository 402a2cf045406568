"""The built-in tiny Qwen2-VL: architecture, tokenizer, pretraining, evaluation, model card."""
