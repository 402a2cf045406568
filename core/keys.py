"""Every Redis key and channel of ttrv-server, in one place (the gateway and the worker both use them).

Delivery semantics of the request stream (`REQUESTS`): at least once. The gateway appends one entry per
answered request; the worker reads it through the consumer group `WORKER_GROUP` and acknowledges an entry
only after a committed adaptation round used it. The gateway creates that group at start-up (from id 0), so
records written before the first worker starts are kept for it, and trims only entries the group has
acknowledged (see server/queue.py).
"""

from __future__ import annotations

PREFIX = "ttrv:"

REQUESTS = PREFIX + "requests"  # stream of request records
WORKER_GROUP = "adapter"  # consumer group of the adaptation worker on REQUESTS
FEEDBACK = PREFIX + "feedback"  # stream of delayed labels (POST /v1/feedback)

ADAPTER_CURRENT = PREFIX + "adapters:current"  # int: the promoted version (0 = base model)
ADAPTER_VERSIONS = PREFIX + "adapters:versions"  # hash: version -> JSON metadata
ADAPTER_EVENTS = PREFIX + "adapters:events"  # pub/sub channel: a new current version was promoted
ADAPTER_HISTORY = PREFIX + "adapters:history"  # stream: pointer moves {version, previous, kind, reason, ts}
ADAPTATION_PAUSED = PREFIX + "adaptation:paused"  # "1" while adaptation is paused


def image(sha256: str) -> str:
    """Image bytes, content-addressed, with a TTL."""
    return f"{PREFIX}image:{sha256}"


def answer(request_id: str) -> str:
    """The response given to `request_id`, kept for idempotent retries and for feedback."""
    return f"{PREFIX}answer:{request_id}"


ADAPTER_NAME_PREFIX = "ttrv-v"  # vLLM serves version N as ttrv-vN


def adapter_name(version: int, base_name: str) -> str:
    """The name vLLM serves a version under: immutable, never reused (`ttrv-v3`); 0 is the base model.

    >>> adapter_name(3, "base"), adapter_name(0, "base")
    ('ttrv-v3', 'base')
    """
    return base_name if version == 0 else f"{ADAPTER_NAME_PREFIX}{version}"


def version_of(name: str, base_name: str) -> int | None:
    """The version a vLLM model name stands for (`adapter_name` backwards); None for a name of no version.

    >>> version_of("ttrv-v3", "base"), version_of("base", "base"), version_of("parity-x", "base")
    (3, 0, None)
    >>> version_of("ttrv-v", "base") is None, version_of("ttrv-v0", "base") is None
    (True, True)
    """
    if name == base_name:
        return 0
    number = name.removeprefix(ADAPTER_NAME_PREFIX)
    if number == name or not number.isdigit() or int(number) == 0:
        return None
    return int(number)


DEAD_LETTERS = PREFIX + "requests:dead"  # stream: REQUESTS entries the worker gave up on (fields + reason)

ADAPTER_NEXT_VERSION = PREFIX + "adapters:next"  # INCR: the last version number handed out (never reused)

DRIFT_STATE = PREFIX + "drift:state"  # JSON: the worker's drift reference and current windows
