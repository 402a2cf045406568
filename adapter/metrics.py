"""The worker's Prometheus metrics (docs/design.md, "Metrics contract"), served on its own port.

Every value is set from what a round actually did: nothing here is a configured or assumed number.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

ROUND_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)
SWAP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class WorkerMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.queue_length = Gauge("ttrv_queue_length", "Entries in the request stream.", registry=r)
        self.queue_pending = Gauge(
            "ttrv_queue_pending", "Records delivered to the worker and not yet acknowledged.", registry=r
        )
        self.adapter_version = Gauge(
            "ttrv_adapter_version", "The current (promoted) adapter version.", registry=r
        )
        self.rounds = Counter(
            "ttrv_adaptation_rounds", "Adaptation rounds by result.", ["result"], registry=r
        )
        self.round_duration = Histogram(
            "ttrv_adaptation_round_duration_seconds",
            "Wall time of a round.",
            buckets=ROUND_BUCKETS,
            registry=r,
        )
        self.rollouts = Counter(
            "ttrv_rollouts", "Answers sampled from the engine for adaptation.", registry=r
        )
        self.reward_mean = Gauge("ttrv_reward_mean", "Mean reward of the last round's samples.", registry=r)
        self.agreement = Gauge(
            "ttrv_vote_agreement_ratio", "Mean majority share of the last round's votes.", registry=r
        )
        self.entropy = Gauge(
            "ttrv_answer_entropy_ratio",
            "Mean normalised answer entropy of the last round's votes.",
            registry=r,
        )
        self.swaps = Counter("ttrv_adapter_swaps", "Adapter hot-swaps by result.", ["result"], registry=r)
        self.swap_duration = Histogram(
            "ttrv_adapter_swap_duration_seconds",
            "Load into vLLM to pointer moved.",
            buckets=SWAP_BUCKETS,
            registry=r,
        )

        self.rollbacks = Counter(
            "ttrv_rollbacks", "Moves of the current pointer back to an older version (automatic or admin).",
            registry=r,
        )  # fmt: skip
        self.drift = Gauge(
            "ttrv_drift_score",
            "Label-free drift against the reference window: answers (JS divergence of served answers), "
            "inputs (standardized shift of image statistics), agreement (drop of rollout vote agreement).",
            ["signal"],
            registry=r,
        )
        self.probe_accuracy = Gauge(
            "ttrv_probe_accuracy_ratio", "Greedy accuracy on the probe file, per version.", ["version"],
            registry=r,
        )  # fmt: skip
        self.feedback_accuracy = Gauge(
            "ttrv_feedback_accuracy_ratio",
            "Accuracy of served answers that got a delayed label (POST /v1/feedback), per serving version.",
            ["version"],
            registry=r,
        )

        # Counters start at zero for every outcome, so "none yet" is a 0 in Prometheus, not a missing series.
        for result in ("promoted", "rejected", "no_signal"):
            self.rounds.labels(result)
        for result in ("ok", "failed"):
            self.swaps.labels(result)

    def set_per_version(self, gauge: Gauge, values: dict[int, float], keep: int = 8) -> None:
        """Set `gauge{version}` for the newest `keep` versions and drop older series (bounded cardinality)."""
        newest = sorted(values)[-keep:]
        for labels in list(gauge._metrics):  # prometheus_client has no public listing of label sets
            if int(labels[0]) not in newest:
                gauge.remove(*labels)
        for version in newest:
            gauge.labels(str(version)).set(values[version])

    def serve(self, port: int) -> None:
        start_http_server(port, registry=self.registry)
