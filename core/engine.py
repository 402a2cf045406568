"""The gateway's client of the vLLM OpenAI server: answers, and runtime adapter loading.

vLLM failures are mapped to two cases the gateway handles differently: the engine is unreachable or
failing (`EngineUnavailableError`, answered 503 with Retry-After), or it does not know the adapter name
it was asked for (`AdapterNotLoadedError`, e.g. after a vLLM restart forgot runtime adapters: the gateway
reloads it and retries, and the client never sees it).
"""

from __future__ import annotations

from typing import Any

import httpx

from core.chat import image_chat_body


class EngineUnavailableError(Exception):
    """vLLM could not be reached or failed on its side."""


class AdapterNotLoadedError(Exception):
    """vLLM answered 404 for the model name: the adapter is not (or no longer) loaded."""


KEEPALIVE_S = 2.0  # seconds an idle connection to vLLM is kept for reuse


class EngineClient:
    def __init__(self, base_url: str, timeout_s: float, max_connections: int = 256):
        # A small keep-alive pool: httpcore scans idle connections on every request. Idle connections
        # expire well before vLLM's server closes them (VLLM_HTTP_TIMEOUT_KEEP_ALIVE, 5 s): with both at
        # 5 s, a request can go out on a connection the server is closing, and fails with ReadError.
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=32, keepalive_expiry=KEEPALIVE_S
        )
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout_s, limits=limits)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        try:
            return await self._http.post(path, json=body)
        except httpx.HTTPError as err:
            raise EngineUnavailableError(f"vLLM unreachable: {type(err).__name__}") from err

    async def complete(
        self,
        model: str,
        image: bytes,
        mime: str,
        question: str,
        *,
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int = 32,
        priority: int = 0,
    ) -> list[str]:
        """The texts of `n` completions for one image and question."""
        body = image_chat_body(
            model,
            image,
            question,
            mime=mime,
            n=n,
            temperature=temperature,
            max_tokens=max_tokens,
            priority=priority,
        )
        reply = await self._post("/v1/chat/completions", body)
        if reply.status_code == 404:
            raise AdapterNotLoadedError(model)
        if reply.status_code >= 500:
            raise EngineUnavailableError(f"vLLM answered {reply.status_code}")
        if reply.status_code != 200:
            # A 400 from vLLM for input the gateway already validated is the engine's problem.
            raise EngineUnavailableError(
                f"vLLM refused the request ({reply.status_code}): {reply.text[:200]}"
            )
        return [str(choice["message"]["content"] or "") for choice in reply.json()["choices"]]

    async def load_adapter(self, name: str, path: str) -> None:
        reply = await self._post("/v1/load_lora_adapter", {"lora_name": name, "lora_path": path})
        # 400 "already loaded" is success for an immutable name.
        if reply.status_code != 200 and "already" not in reply.text:
            raise EngineUnavailableError(
                f"vLLM could not load {name} from {path}: {reply.status_code} {reply.text[:200]}"
            )

    async def unload_adapter(self, name: str) -> None:
        await self._post("/v1/unload_lora_adapter", {"lora_name": name})

    async def loaded_models(self) -> set[str]:
        try:
            reply = await self._http.get("/v1/models")
            reply.raise_for_status()
        except httpx.HTTPError as err:
            raise EngineUnavailableError(f"vLLM unreachable: {type(err).__name__}") from err
        return {str(m["id"]) for m in reply.json()["data"]}

    async def healthy(self) -> bool:
        try:
            return (await self._http.get("/health", timeout=2.0)).status_code == 200
        except httpx.HTTPError:
            return False
