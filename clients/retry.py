"""When to try a call again, and how long to wait first: pure functions shared by the sync and async clients.

The gateway answers 429 (rate limit, queue full) and 503 (engine or Redis unavailable) for conditions that
pass, and says how long with `Retry-After`; waiting that long is both kinder to it and faster than guessing.
Without the header the client backs off exponentially with jitter, so many clients that failed together do
not all come back in the same instant. A connection that fails or times out is retried the same way:
`POST /v1/answer` always carries an idempotency key, so a retry can never create a second record.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

RETRY_STATUSES = frozenset({429, 503})

# Failures of the exchange itself that may pass (not, e.g., httpx.UnsupportedProtocol, a bad URL).
RETRY_ERRORS: tuple[type[httpx.TransportError], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)

Outcome = httpx.Response | httpx.TransportError


@dataclass(frozen=True)
class RetryPolicy:
    """`max_retries` retries after the first attempt (so at most `max_retries + 1` requests)."""

    max_retries: int = 5
    max_backoff_s: float = 30.0
    base_backoff_s: float = 0.5

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.max_backoff_s < 0 or self.base_backoff_s < 0:
            raise ValueError(f"retry settings must not be negative: {self}")


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date); None if absent or bad.

    >>> parse_retry_after("3"), parse_retry_after("0.5"), parse_retry_after(None), parse_retry_after("soon")
    (3.0, 0.5, None, None)
    >>> parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC))
    10.0
    """
    if value is None or not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(seconds, 0.0) if seconds == seconds else None  # NaN is not a delay


def backoff(attempt: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Exponential backoff with "equal jitter": between half and all of `base * 2**attempt`, capped.

    >>> class Top(random.Random):
    ...     def random(self) -> float:
    ...         return 1.0
    >>> [backoff(a, RetryPolicy(max_backoff_s=3.0), Top()) for a in range(5)]
    [0.5, 1.0, 2.0, 3.0, 3.0]
    """
    ceiling = min(policy.max_backoff_s, policy.base_backoff_s * 2.0**attempt)
    return ceiling * (0.5 + 0.5 * rng.random())


def next_delay(
    outcome: Outcome, attempt: int, policy: RetryPolicy, rng: random.Random, *, retryable: bool = True
) -> float | None:
    """Seconds to sleep before retrying after `attempt` (0 = the first request), or None to stop here."""
    if not retryable or attempt >= policy.max_retries:
        return None
    if isinstance(outcome, httpx.Response):
        if outcome.status_code not in RETRY_STATUSES:
            return None
        asked = parse_retry_after(outcome.headers.get("retry-after"))
        if asked is not None:
            return min(asked, policy.max_backoff_s)
    elif not isinstance(outcome, RETRY_ERRORS):
        return None
    return backoff(attempt, policy, rng)
