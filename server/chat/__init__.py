"""The OpenAI-compatible API: `/v1/chat/completions` and `/v1/models`, as vLLM serves them, in front of the
same engine and adaptation as `/v1/answer` (protocol, model names, images, serving, streaming)."""
