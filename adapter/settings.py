"""Settings of the adaptation worker, from `TTRV_*` environment variables (the only place they are read).

Every field says what it does; `ttrv worker --help` and the README's configuration reference list them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from adapter.rewards import load_reward
from core.answers import load_extractor


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TTRV_", extra="ignore")

    redis_url: str = Field(
        default="redis://127.0.0.1:6390/0", description="Redis holding records and adapters"
    )
    vllm_url: str = Field(default="http://127.0.0.1:8100", description="the serving vLLM (used for rollouts)")
    base_model_name: str = Field(default="base", description="name vLLM serves the base model under")
    home: Path = Field(
        default=Path.home() / ".cache" / "ttrv", description="cache folder (models/, adapters/)"
    )
    model_seed: int = Field(default=0, description="seed of the built-in model, when model_path is unset")
    model_path: Path | None = Field(
        default=None, description="the served model's Hugging Face folder (default: the built-in model)"
    )
    adapter_dir: Path | None = Field(
        default=None,
        description="versions are saved here as vN/; vLLM must read the same folder (default: home/adapters)",
    )
    consumer_name: str = Field(default="worker-1", description="consumer name in the stream's group")
    metrics_port: int = Field(default=9101, description="port of the worker's Prometheus /metrics")

    round_min_records: int = Field(default=64, description="new records that start a round")
    round_interval_s: float = Field(
        default=60.0, description="a round also starts after this long, if any record"
    )
    round_max_records: int = Field(default=128, description="new records one round trains on at most")
    replay_share: float = Field(
        default=1.0,
        description="replayed recent records per new record in a round (~2 epochs as in the paper)",
    )
    samples: int = Field(default=32, ge=2, le=64, description="answers sampled per record for the vote (N)")
    keep: int = Field(default=16, ge=2, description="answers per record used in the loss (K <= N)")
    temperature: float = Field(default=1.0, gt=0, description="rollout sampling temperature")
    max_tokens: int = Field(default=8, description="longest sampled answer, in tokens")
    rollout_priority: int = Field(default=10, description="vLLM priority of rollouts (answers use 0: first)")
    reward: str = Field(
        default="ttrv",
        description="ttrv: p(a) - alpha*H/log M; frequency; majority (TTRL); random (control); or "
        "package.module:function, fn(answers) -> one reward per answer (adapter/rewards.py)",
    )
    answer_extractor: str = Field(
        default="default",
        description="what counts as the same answer (core/plugins.py); the gateway must use the same",
    )
    alpha: float = Field(
        default=0.75, description="weight of the normalised answer entropy in the TTRV reward"
    )
    lr: float = Field(default=3e-4, gt=0, description="AdamW learning rate of the LoRA")
    epochs: int = Field(default=1, description="passes over a round's records")
    lora_rank: int = Field(default=8, description="LoRA rank (vLLM's --max-lora-rank must be at least this)")
    lora_vision: bool = Field(default=True, description="adapt the vision tower and merger too")
    lora_targets: list[str] | None = Field(
        default=None,
        description="module-name regexes the LoRA trains, each of which must match a Linear module of the "
        "model (checked at start); unset = Qwen2-VL's language model, vision tower and merger "
        "(adapter/lora.py)",
    )
    kl_coef: float = Field(default=0.001, description="weight of the k3 KL to the base model")
    max_deliveries: int = Field(default=5, description="deliveries after which a record is dead-lettered")
    claim_idle_ms: int = Field(
        default=60_000, description="take over a crashed worker's records after this idle"
    )
    gate_share: float = Field(
        default=0.25, description="share of a round's new records held back for the gate"
    )
    gate_min_records: int = Field(default=8, description="fewest held-back records for the gate to run")
    swap_grace_s: float = Field(
        default=30.0,
        description="keep the previous version loaded this long after a swap, for requests in flight on it",
    )
    probe_path: Path | None = Field(
        default=None,
        description="labeled probe file (TTRV rows with answers) the gate and rollback compare accuracy on",
    )
    accuracy_tolerance: float = Field(
        default=0.02,
        description="accuracy (0..1) a candidate may lose to the current version on a labeled check, and the "
        "current version to its predecessor before an automatic rollback",
    )
    min_gain_over_base: float = Field(
        default=0.03,
        description="probe accuracy (0..1) a candidate must gain over the base model before it is served; "
        "one short of it, no worse than the base and passing every other check, is not served, but the "
        "next round trains on from it",
    )
    gate_min_labels: int = Field(
        default=20, description="fewest recent feedback labels for the gate to compare accuracy on them"
    )
    feedback_window: int = Field(
        default=500, description="latest feedback labels the gate, rollback and accuracy metrics look at"
    )
    rollback_check_s: float = Field(
        default=15.0, description="how often to compare the current version with its predecessor"
    )
    rollback_min_labels: int = Field(
        default=20, description="labels on the current version's answers needed before it can be rolled back"
    )
    max_loaded_adapters: int = Field(
        default=4,
        ge=3,  # the current version, the previous one in its grace period, and a candidate under the gate
        description="adapters kept loaded in vLLM at once; at most half of vLLM's --max-loras and "
        "--max-cpu-loras (past them vLLM evicts one silently; others may load names too)",
    )
    retention_promoted: int = Field(
        default=10, description="newest promoted or rolled-back versions whose folders are kept"
    )
    retention_rejected: int = Field(
        default=10, description="newest rejected versions whose folders are kept for inspection"
    )
    drift_window: int = Field(
        default=200, description="records in the drift reference window and in the current window"
    )
    seed: int = Field(default=0, description="seed of sampling and shuffling")
    log_json: bool = Field(default=True, description="one JSON object per log line (else plain text)")

    @field_validator("answer_extractor")
    @classmethod
    def _extractor_importable(cls, spec: str) -> str:
        load_extractor(spec)  # fails at start, naming the setting
        return spec

    @field_validator("reward")
    @classmethod
    def _reward_importable(cls, spec: str) -> str:
        load_reward(spec)
        return spec

    @model_validator(mode="after")
    def _consistent(self) -> WorkerSettings:
        """Rules across fields, each with the variable to change (TRL's config checks do the same)."""
        problems = []
        if self.keep > self.samples:
            problems.append(
                f"TTRV_KEEP={self.keep} is more than TTRV_SAMPLES={self.samples}: the loss keeps K of the N "
                "answers sampled per record; set TTRV_KEEP to at most TTRV_SAMPLES"
            )
        if self.round_min_records > self.round_max_records:
            problems.append(
                f"TTRV_ROUND_MIN_RECORDS={self.round_min_records} is more than TTRV_ROUND_MAX_RECORDS="
                f"{self.round_max_records}: a round would start with more records than it may use; lower "
                "the first or raise the second"
            )
        if not 0.0 <= self.gate_share < 1.0:
            problems.append(
                f"TTRV_GATE_SHARE={self.gate_share}: the share of a round's records held back for the gate "
                "must be in [0, 1); 0 turns the label-free gate off"
            )
        if not 0.0 <= self.accuracy_tolerance < 1.0 or not 0.0 <= self.min_gain_over_base < 1.0:
            problems.append(
                "TTRV_ACCURACY_TOLERANCE and TTRV_MIN_GAIN_OVER_BASE are accuracies (0..1), e.g. 0.02 for "
                f"2 points; got {self.accuracy_tolerance} and {self.min_gain_over_base}"
            )
        if self.replay_share < 0:
            problems.append(f"TTRV_REPLAY_SHARE={self.replay_share} must be >= 0 (0: no replay)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def model_folder(self) -> Path:
        return self.model_path or self.home / "models" / f"tiny-qwen2vl-digits-s{self.model_seed}"

    @property
    def adapters_folder(self) -> Path:
        return self.adapter_dir or self.home / "adapters"
