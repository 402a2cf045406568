"""A steady closed-loop load on `POST /v1/answer`, every request recorded with its times and its version."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

import httpx

JSON_HEADERS = {"content-type": "application/json"}


@dataclass(frozen=True)
class Sample:
    """One request: `time.perf_counter()` at send and at the complete reply, and what the reply said."""

    image: int
    start_s: float
    end_s: float
    status: int  # HTTP status; 0 when no reply came (connection error, timeout)
    version: int | None = None  # `adapter_version` of a 200 reply
    answer: str | None = None  # its extracted `answer`

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def latency_s(self) -> float:
        return self.end_s - self.start_s


def answer_bodies(pngs: Sequence[bytes], question: str) -> list[bytes]:
    """The JSON body of `POST /v1/answer` for each image, encoded once so encoding is never timed."""
    return [
        json.dumps({"image": base64.b64encode(png).decode("ascii"), "question": question}).encode()
        for png in pngs
    ]


class ClosedLoop:
    """`concurrency` clients, each sending its next image as soon as its previous reply is in.

    A closed loop keeps the same number of requests in flight whatever the latency, so a slower moment shows
    as longer latencies (and fewer requests), never as a queue that builds up in the client.

        async with ClosedLoop(url, bodies, 4) as load:
            ...  # load.samples grows while this runs
    """

    def __init__(
        self,
        url: str,
        bodies: Sequence[bytes],
        concurrency: int,
        timeout_s: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,  # tests answer without a server
    ):
        self.url = url
        self.bodies = bodies
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.transport = transport
        self.samples: list[Sample] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None

    async def _send(self, client: httpx.AsyncClient, image: int) -> Sample:
        started = time.perf_counter()
        try:
            reply = await client.post(self.url, content=self.bodies[image], headers=JSON_HEADERS)
        except httpx.HTTPError:
            return Sample(image, started, time.perf_counter(), 0)
        ended = time.perf_counter()
        if reply.status_code != 200:
            return Sample(image, started, ended, reply.status_code)
        body = reply.json()
        return Sample(image, started, ended, 200, int(body["adapter_version"]), str(body["answer"]))

    async def _client_loop(self, client: httpx.AsyncClient, k: int) -> None:
        image = k  # client k sends images k, k + c, k + 2c, ...: all clients together cycle the set
        while not self._stop.is_set():
            self.samples.append(await self._send(client, image % len(self.bodies)))
            image += self.concurrency

    async def __aenter__(self) -> ClosedLoop:
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        self._client = httpx.AsyncClient(timeout=self.timeout_s, limits=limits, transport=self.transport)
        self._tasks = [
            asyncio.create_task(self._client_loop(self._client, k)) for k in range(self.concurrency)
        ]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Let the requests in flight finish (they are recorded), then close the connections."""
        self._stop.set()
        try:
            await asyncio.gather(*self._tasks)
        finally:
            if self._client is not None:
                await self._client.aclose()
