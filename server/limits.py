"""Load shedding: a token bucket per client, and a cap on answers computed at once. Both answer 429."""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass

from server.errors import APIError


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets of `burst` tokens refilled at `rate_per_s`, one per client, the least recent evicted.

    >>> limiter = RateLimiter(rate_per_s=1.0, burst=2, retry_after_s=1)
    >>> limiter.take("k", now=0.0); limiter.take("k", now=0.0)
    >>> try:
    ...     limiter.take("k", now=0.0)
    ... except APIError as err:
    ...     print(err.status)
    429
    >>> limiter.take("k", now=1.0)  # one token back after a second
    """

    def __init__(self, rate_per_s: float, burst: int, retry_after_s: int, max_clients: int = 100_000):
        self.rate = rate_per_s
        self.burst = burst
        self.retry_after_s = retry_after_s
        self.max_clients = max_clients
        self._buckets: collections.OrderedDict[str, _Bucket] = collections.OrderedDict()

    def take(self, client: str, now: float | None = None) -> None:
        if self.rate <= 0:
            return
        now = time.monotonic() if now is None else now
        bucket = self._buckets.pop(client, None) or _Bucket(float(self.burst), now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        self._buckets[client] = bucket
        if len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        if bucket.tokens < 1:
            wait = max(1, int((1 - bucket.tokens) / self.rate + 0.999))
            raise APIError(429, f"rate limit of {self.rate:g} requests/s exceeded; retry after {wait} s",
                           "rate_limit_error", retry_after_s=wait)  # fmt: skip
        bucket.tokens -= 1


class InFlight:
    """Counts answers being computed; past `limit` new ones are refused instead of queueing without bound."""

    def __init__(self, limit: int, retry_after_s: int):
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.count = 0

    def __enter__(self) -> InFlight:
        if self.count >= self.limit:
            raise APIError(429, f"{self.limit} requests are already in flight; retry shortly",
                           "rate_limit_error", retry_after_s=self.retry_after_s)  # fmt: skip
        self.count += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self.count -= 1
