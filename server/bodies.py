"""Request bodies read with a cap: the declared Content-Length first, then a running count while reading."""

from __future__ import annotations

from fastapi import Request

from server.errors import APIError


async def read_capped(request: Request, limit: int) -> bytes:
    """The whole body, or 413 as soon as it is known to be over `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"request body is over the {limit} byte limit; send a smaller image")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise APIError(413, f"request body is over the {limit} byte limit; send a smaller image")
    return bytes(body)
