"""The one exception the SDK raises for a failed call, carrying the server's error envelope.

Callers handle a single type: a final non-2xx reply, a reply the SDK cannot parse, or no reply at all
(`status == 0`: connection refused, timed out) all become a `TTRVError`, so the CLI can print it and exit
without a traceback, and an application can branch on `status`, `type` and `code`.
"""

from __future__ import annotations

NO_REPLY = 0  # `status` of an error where the server never answered (connection refused, timeout)


class TTRVError(Exception):
    """A call that failed: the HTTP status and the fields of `{"error": {...}}`, plus `Retry-After`.

    >>> err = TTRVError(429, "queue full; retry later", type="rate_limit", retry_after=2.0)
    >>> str(err), err.status, err.retry_after
    ('429 rate_limit: queue full; retry later', 429, 2.0)
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "error",  # named as in the wire envelope
        param: str | None = None,
        code: str | int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {type}: {message}")
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.retry_after = retry_after
