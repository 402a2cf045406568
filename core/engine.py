"""The client of the vLLM OpenAI server: answers, chat completions as they are, and runtime adapter loading.

vLLM's failures are mapped to three cases that callers handle differently: the engine is unreachable or
failing (`EngineUnavailableError`, answered 503 with Retry-After); it does not know the adapter name it was
asked for (`AdapterNotLoadedError`, e.g. after a vLLM restart forgot runtime adapters: the router reloads
it and retries, and the client never sees it); or it refused the request itself, which is the client's
mistake (`EngineRefusedError`: a prompt longer than the context, a bad sampling parameter), passed on to
the client with vLLM's reason and status, never as 503.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

from core.chat import image_chat_body


class EngineUnavailableError(Exception):
    """vLLM could not be reached or failed on its side."""


class AdapterNotLoadedError(Exception):
    """vLLM answered 404 for the model name: the adapter is not (or no longer) loaded."""


class EngineRefusedError(Exception):
    """vLLM refused the request as invalid (a 4xx other than 404): the client's to fix, with vLLM's reason."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message
        super().__init__(f"vLLM refused the request ({status}): {message}")


def vllm_error_message(reply: httpx.Response) -> str:
    """The reason in a vLLM error reply (its OpenAI-style envelope), else the start of the body.

    >>> vllm_error_message(httpx.Response(400, json={"error": {"message": "too long", "code": 400}}))
    'too long'
    >>> vllm_error_message(httpx.Response(400, text="plain"))
    'plain'
    """
    try:
        body = reply.json()
    except ValueError:
        return reply.text[:300]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])[:300]
    if isinstance(body, dict) and body.get("message"):  # older vLLM: the envelope's fields at the top
        return str(body["message"])[:300]
    return reply.text[:300]


def check_reply(reply: httpx.Response, model: str) -> None:
    """Raise the error a non-200 reply of vLLM's chat route stands for."""
    if reply.status_code == 200:
        return
    if reply.status_code == 404:
        raise AdapterNotLoadedError(model)
    if reply.status_code >= 500:
        raise EngineUnavailableError(f"vLLM answered {reply.status_code}")
    raise EngineRefusedError(reply.status_code, vllm_error_message(reply))


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
        check_reply(reply, model)
        return [str(choice["message"]["content"] or "") for choice in reply.json()["choices"]]

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        """One OpenAI chat completion, the body sent and the reply returned as they are."""
        reply = await self._post("/v1/chat/completions", body)
        check_reply(reply, str(body.get("model")))
        result: dict[str, Any] = reply.json()
        return result

    @contextlib.asynccontextmanager
    async def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[AsyncIterator[str]]:
        """A streamed chat completion: its server-sent-event lines, once vLLM has accepted the request.

        The status is checked before the first line is handed out, so an unknown adapter name or a refusal
        raises here, where the caller can still retry or answer with an error status.
        """
        request = self._http.build_request("POST", "/v1/chat/completions", json=body)
        try:
            reply = await self._http.send(request, stream=True)
        except httpx.HTTPError as err:
            raise EngineUnavailableError(f"vLLM unreachable: {type(err).__name__}") from err
        try:
            if reply.status_code != 200:
                await reply.aread()
                check_reply(reply, str(body.get("model")))
            yield reply.aiter_lines()
        except httpx.HTTPError as err:
            raise EngineUnavailableError(f"vLLM stream broke off: {type(err).__name__}") from err
        finally:
            await reply.aclose()

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
