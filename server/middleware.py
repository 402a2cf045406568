"""Pure ASGI middlewares: one times every request and counts it by route template and status; one gives
every request an id (the client's `X-Request-Id`, or a new one) for the logs and echoes it in the reply.

Pure ASGI rather than `BaseHTTPMiddleware`: they add no task or stream wrapping to the hot path, which the
gateway-overhead benchmark measures against direct vLLM calls.
"""

from __future__ import annotations

import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.logs import request_id_var
from server.metrics import GatewayMetrics


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: GatewayMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            # Unmatched paths share one label: a label per arbitrary path would be unbounded cardinality.
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(template, str(status)).inc()
            self.metrics.duration.labels(template).observe(time.perf_counter() - started)


_REQUEST_ID = re.compile(rb"^[\x21-\x7e]{1,128}$")  # visible ASCII: safe in logs and in a header


class RequestIdMiddleware:
    """`X-Request-Id`: the client's (visible ASCII, at most 128 characters) or a new one, set for the logs
    of the request and sent back in the reply's headers, so a client can quote it to an operator."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
        request_id = given if given is not None and _REQUEST_ID.match(given) else uuid.uuid4().hex.encode()
        request_id_var.set(request_id.decode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id)]
            await send(message)

        await self.app(scope, receive, send_with_id)
