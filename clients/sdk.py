"""`TTRVClient` (sync) and `AsyncTTRVClient` (async): the Python SDK of the TTRV gateway.

Both build their calls with `clients.calls` and decide retries with `clients.retry`; the classes only do
the I/O (send, sleep) and hold the connection pool. Use them as context managers to close the pool.

>>> with TTRVClient("http://127.0.0.1:8000", api_key="k") as client:  # doctest: +SKIP
...     reply = client.answer(Path("digit.png"), "Which digit is shown? Answer with one digit.")
...     client.feedback(reply.id, "7")
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from clients import calls
from clients.calls import Call, ImageInput
from clients.models import AdapterList, Answer
from clients.retry import RETRY_ERRORS, Outcome, RetryPolicy, next_delay
from clients.settings import ClientSettings

T = TypeVar("T")

USER_AGENT = "ttrv-client/0.1"


@dataclass(frozen=True)
class ClientConfig:
    """Where and how to call: explicit arguments first, then `ClientSettings` (TTRV_* variables)."""

    url: str
    api_key: str | None
    admin_token: str | None
    timeout_s: float
    retry: RetryPolicy

    @classmethod
    def resolve(
        cls,
        url: str | None,
        api_key: str | None,
        admin_token: str | None,
        timeout_s: float | None,
        settings: ClientSettings | None,
        retry: RetryPolicy,
    ) -> ClientConfig:
        base = settings or ClientSettings()
        return cls(
            url=url or base.url,
            api_key=api_key if api_key is not None else base.api_key,
            admin_token=admin_token if admin_token is not None else base.admin_token,
            timeout_s=timeout_s if timeout_s is not None else base.timeout_s,
            retry=retry,
        )

    def http_options(self) -> dict[str, Any]:
        """Keyword arguments shared by `httpx.Client` and `httpx.AsyncClient`."""
        return {"base_url": self.url, "timeout": self.timeout_s, "headers": {"User-Agent": USER_AGENT}}


class _Base:
    """Configuration and the per-request pieces the two clients share."""

    def __init__(
        self,
        url: str | None,
        api_key: str | None,
        admin_token: str | None,
        timeout_s: float | None,
        settings: ClientSettings | None,
        max_retries: int,
        max_backoff_s: float,
        rng: random.Random | None,
    ) -> None:
        retry = RetryPolicy(max_retries=max_retries, max_backoff_s=max_backoff_s)
        self.config = ClientConfig.resolve(url, api_key, admin_token, timeout_s, settings, retry)
        self._rng = rng or random.Random()

    def _request_options(self, call: Call[Any]) -> dict[str, Any]:
        headers = calls.auth_headers(call, self.config.api_key, self.config.admin_token)
        return {"method": call.method, "url": call.path, "json": call.body, "headers": headers}

    def _delay(self, call: Call[Any], outcome: Outcome, attempt: int) -> float | None:
        return next_delay(outcome, attempt, self.config.retry, self._rng, retryable=call.retry)


class TTRVClient(_Base):
    """Blocking client. Retries 429, 503 and connection failures up to `max_retries` times, sleeping the
    server's `Retry-After` (capped at `max_backoff_s`) or an exponential backoff with jitter; a call that
    still fails raises `TTRVError`. Arguments left as None come from `settings` (default: TTRV_* variables).
    `sleep` and `transport` are for tests (no real waiting, `httpx.MockTransport`).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        admin_token: str | None = None,
        timeout_s: float | None = None,
        settings: ClientSettings | None = None,
        max_retries: int = 5,
        max_backoff_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(url, api_key, admin_token, timeout_s, settings, max_retries, max_backoff_s, rng)
        self._sleep = sleep
        self._http = httpx.Client(transport=transport, **self.config.http_options())

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def call(self, call: Call[T]) -> T:
        """Send `call`, retrying as the policy says, and return its parsed reply or raise `TTRVError`."""
        attempt = 0
        while True:
            outcome: Outcome
            try:
                outcome = self._http.request(**self._request_options(call))
            except RETRY_ERRORS as exc:
                outcome = exc
            delay = self._delay(call, outcome, attempt)
            if delay is None:
                return calls.conclude(call, outcome, self.config.url)
            self._sleep(delay)
            attempt += 1

    def answer(
        self,
        image: ImageInput,
        question: str,
        *,
        options: list[str] | None = None,
        request_id: str | None = None,
        stream: str | None = None,
        samples: int | None = None,
    ) -> Answer:
        """Answer `question` about `image` (bytes, or a file path as `Path` or `str`).

        Without `request_id` one is generated (uuid4) per call and sent on every retry of that call, so a
        retried request can never create two records on the server.
        """
        return self.call(
            calls.answer_call(
                image, question, options=options, request_id=request_id, stream=stream, samples=samples
            )
        )

    def feedback(self, id: str, label: str) -> None:
        """Report the true `label` of answered request `id` (served accuracy per adapter version)."""
        self.call(calls.feedback_call(id, label))

    def adapters(self) -> AdapterList:
        return self.call(calls.adapters_call())

    def promote(self, version: int) -> AdapterList | dict[str, Any]:
        """Serve `version` (admin); an older one is a rollback, 0 the base model."""
        return self.call(calls.promote_call(version))

    def pause(self) -> dict[str, Any]:
        """Stop starting adaptation rounds (admin); serving goes on with the current adapter."""
        return self.call(calls.adaptation_call("pause"))

    def resume(self) -> dict[str, Any]:
        return self.call(calls.adaptation_call("resume"))

    def health(self) -> dict[str, Any]:
        return self.call(calls.health_call())

    def ready(self) -> dict[str, Any]:
        """Component states from `GET /ready`, whether it answers 200 (ready) or 503 (not), no retries."""
        return self.call(calls.ready_call())


class AsyncTTRVClient(_Base):
    """The same as `TTRVClient` with `async` methods over `httpx.AsyncClient`; `sleep` is awaited."""

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        admin_token: str | None = None,
        timeout_s: float | None = None,
        settings: ClientSettings | None = None,
        max_retries: int = 5,
        max_backoff_s: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(url, api_key, admin_token, timeout_s, settings, max_retries, max_backoff_s, rng)
        self._sleep = sleep
        self._http = httpx.AsyncClient(transport=transport, **self.config.http_options())

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def call(self, call: Call[T]) -> T:
        """Send `call`, retrying as the policy says, and return its parsed reply or raise `TTRVError`."""
        attempt = 0
        while True:
            outcome: Outcome
            try:
                outcome = await self._http.request(**self._request_options(call))
            except RETRY_ERRORS as exc:
                outcome = exc
            delay = self._delay(call, outcome, attempt)
            if delay is None:
                return calls.conclude(call, outcome, self.config.url)
            await self._sleep(delay)
            attempt += 1

    async def answer(
        self,
        image: ImageInput,
        question: str,
        *,
        options: list[str] | None = None,
        request_id: str | None = None,
        stream: str | None = None,
        samples: int | None = None,
    ) -> Answer:
        """Answer `question` about `image` (bytes, or a file path as `Path` or `str`).

        Without `request_id` one is generated (uuid4) per call and sent on every retry of that call, so a
        retried request can never create two records on the server.
        """
        return await self.call(
            calls.answer_call(
                image, question, options=options, request_id=request_id, stream=stream, samples=samples
            )
        )

    async def feedback(self, id: str, label: str) -> None:
        """Report the true `label` of answered request `id` (served accuracy per adapter version)."""
        await self.call(calls.feedback_call(id, label))

    async def adapters(self) -> AdapterList:
        return await self.call(calls.adapters_call())

    async def promote(self, version: int) -> AdapterList | dict[str, Any]:
        """Serve `version` (admin); an older one is a rollback, 0 the base model."""
        return await self.call(calls.promote_call(version))

    async def pause(self) -> dict[str, Any]:
        """Stop starting adaptation rounds (admin); serving goes on with the current adapter."""
        return await self.call(calls.adaptation_call("pause"))

    async def resume(self) -> dict[str, Any]:
        return await self.call(calls.adaptation_call("resume"))

    async def health(self) -> dict[str, Any]:
        return await self.call(calls.health_call())

    async def ready(self) -> dict[str, Any]:
        """Component states from `GET /ready`, whether it answers 200 (ready) or 503 (not), no retries."""
        return await self.call(calls.ready_call())
