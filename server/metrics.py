"""The gateway's Prometheus metrics (docs/design.md, "Metrics contract"), on a registry of its own.

A registry per app keeps tests that build several apps independent, and `/metrics` shows only these.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ttrv_requests_total", "Requests by route template and HTTP status.", ["route", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.duration = Histogram(
            "ttrv_request_duration_seconds", "Request latency by route template.", ["route"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.enqueue_failures = Counter(
            "ttrv_enqueue_failures", "Records lost: dropped from the full buffer while Redis was down.",
            registry=self.registry,
        )  # fmt: skip
        self.served_version = Gauge(
            "ttrv_served_adapter_version", "Adapter version new requests are routed to (0 = base model).",
            registry=self.registry,
        )  # fmt: skip
        self.buffered = Gauge(
            "ttrv_record_buffer_length", "Records held in memory until Redis is reachable again.",
            registry=self.registry,
        )  # fmt: skip
        self.adapter_misses = Counter(
            "ttrv_adapter_misses",
            "Engine calls answered 404 for their adapter name (vLLM restarted, or the name was retired while "
            "the request was routed); the gateway retried them, clients never saw it.",
            registry=self.registry,
        )
        self.chat_requests = Counter(
            "ttrv_chat_requests",
            "Chat completions answered, by whether they were recorded for adaptation (single-turn with "
            "exactly one image) or only served.",
            ["recorded"],
            registry=self.registry,
        )
