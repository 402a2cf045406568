"""What the rollout benchmark measures (bench/rollouts.py): one vLLM per engine configuration, rounds of
rollouts sent exactly as the worker sends them, and served answers beside them.

An engine configuration is vLLM's flags plus the LoRA ops its engine process runs: `before` is the flags of
stack/vllm.py less this benchmark's (no `--block-size`: the CPU default of 128; no `--max-num-seqs` or
`--max-num-batched-tokens`: vLLM's CPU defaults of 128 sequences and 2048 tokens per step; `--max-lora-rank`
16) with the per-token LoRA ops (`TTRV_VLLM_LORA_OPS=per_token`: vLLM's gather with the -1 rows zeroed, as the
line-level patch had it); `after` is stack/vllm.py as it is, with the grouped ops. Other configurations are
`after` with flags changed.

A round is `records` digit images, one chat completion with n samples each, sent through the worker's own
`VllmRollouts.sample` (priority 10, the banned vision tokens, T=1) with `in_flight` requests at a time (the
worker's semaphore) or in waves of `wave` records, each wave waiting for the one before. Every round takes
fresh images (the demo's contrast shift at varying severities over all 1797 digits), so no round finds
another's prompts in the prefix cache, as in the worker, whose records are new each round. Served answers
are the gateway's request to vLLM (greedy, 32 tokens, priority 0), sent open-loop at the demo's rate to an
adapter name of their own (the served version), while rollouts sample another (the candidate).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from adapter.rollouts import VllmRollouts
from core.chat import image_chat_body
from stack.process import ManagedProcess
from stack.settings import StackSettings
from stack.vllm import SERVED_NAME, healthy, vllm_argv, vllm_env

# Flags this benchmark is about; `before` runs without them, at the old LoRA rank.
NEW_FLAGS = ("--block-size", "--max-num-seqs", "--max-num-batched-tokens")
BEFORE_RANK = "16"
ROLLOUT_NAME, SERVED_ADAPTER = "bench-candidate", "bench-served"
SERVED_MAX_TOKENS = 32  # the gateway's TTRV_MAX_TOKENS
ROLLOUT_PRIORITY = 10  # the worker's TTRV_ROLLOUT_PRIORITY


def drop_flags(argv: Sequence[str], names: Sequence[str]) -> list[str]:
    """`argv` without the flags `names` and their values.

    >>> drop_flags(["x", "--a", "1", "--b", "2"], ["--a"])
    ['x', '--b', '2']
    """
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in names:
            skip = True
        else:
            out.append(arg)
    return out


def set_flag(argv: Sequence[str], name: str, value: str) -> list[str]:
    """`argv` with flag `name` set to `value` (replaced where it is, appended otherwise).

    >>> set_flag(["--a", "1"], "--a", "2"), set_flag(["--a", "1"], "--b", "3")
    (['--a', '2'], ['--a', '1', '--b', '3'])
    """
    out = list(argv)
    if name in out:
        out[out.index(name) + 1] = value
        return out
    return [*out, name, value]


@dataclass(frozen=True)
class EngineConfig:
    name: str
    ops: str  # "grouped" | "per_token": TTRV_VLLM_LORA_OPS of its engine process
    before_flags: bool = False  # start from the flags before this change
    changes: tuple[tuple[str, str], ...] = ()  # (flag, value) set on top

    def argv(self, model: Path, port: int, settings: StackSettings) -> list[str]:
        argv = vllm_argv(model, port, settings)
        if self.before_flags:
            argv = set_flag(drop_flags(argv, NEW_FLAGS), "--max-lora-rank", BEFORE_RANK)
        for name, value in self.changes:
            argv = set_flag(argv, name, value)
        return argv

    def flags(self, settings: StackSettings) -> dict[str, str]:
        """The flags this benchmark is about, as this configuration runs them ('default': vLLM's)."""
        argv = self.argv(Path("/model"), 0, settings)
        return {
            name: argv[argv.index(name) + 1] if name in argv else "default"
            for name in (*NEW_FLAGS, "--max-lora-rank")
        }


BEFORE = EngineConfig("before", "per_token", before_flags=True)
AFTER = EngineConfig("after", "grouped")


def parse_config(text: str) -> EngineConfig:
    """`NAME=--flag value --flag value`: `after` with those flags changed; `before` and `after` by name.

    >>> parse_config("block16=--block-size 16")
    EngineConfig(name='block16', ops='grouped', before_flags=False, changes=(('--block-size', '16'),))
    >>> parse_config("before").ops
    'per_token'
    """
    name, _, flags = text.partition("=")
    if not flags:
        known = {"before": BEFORE, "after": AFTER}
        if name not in known:
            raise ValueError(f"{name!r}: give its flags as NAME=--flag value ...")
        return known[name]
    words = flags.split()
    if len(words) % 2 or not all(w.startswith("--") for w in words[::2]):
        raise ValueError(f"{text!r}: expected NAME=--flag value [--flag value ...]")
    return EngineConfig(name, "grouped", changes=tuple(zip(words[::2], words[1::2], strict=True)))


@dataclass(frozen=True)
class Mode:
    """How a round's requests are sent: `size` in flight at a time, or waves of `size` records."""

    kind: str  # "in_flight" | "waves"
    size: int

    @property
    def label(self) -> str:
        return f"{self.size} in flight" if self.kind == "in_flight" else f"waves of {self.size}"

    @staticmethod
    def parse(text: str) -> Mode:
        """`in_flight:32` or `waves:8`.

        >>> Mode.parse("waves:8").label, Mode.parse("in_flight:32").label
        ('waves of 8', '32 in flight')
        """
        kind, _, size = text.partition(":")
        if kind not in ("in_flight", "waves") or not size.isdigit() or int(size) < 1:
            raise ValueError(f"{text!r}: expected in_flight:N or waves:N")
        return Mode(kind, int(size))


WORKER_MODE = Mode("in_flight", 32)  # adapter/worker.py: Semaphore(32)


@dataclass(frozen=True)
class Plan:
    records: int = 64  # one round's records
    samples: int = 32  # the worker's TTRV_SAMPLES
    max_tokens: int = 8  # the worker's TTRV_MAX_TOKENS (the demo uses 4)
    temperature: float = 1.0
    repeats: int = 2  # rounds per model (base, adapter) and configuration
    rate: float = 2.0  # served answers per second (the demo's TTRV_DEMO_RATE)
    window_s: float = 20.0  # serving measured this long quiet, and this long under back-to-back rounds
    wave_modes: tuple[Mode, ...] = (
        WORKER_MODE,
        Mode("in_flight", 8),
        Mode("waves", 8),
        Mode("in_flight", 64),
    )
    waves_on: str = "after"  # the configuration the wave modes are measured on
    seed: int = 0


class Images:
    """Fresh digit PNGs for every request: the demo's contrast shift, one severity per pass over the 1797."""

    SEVERITIES = (3, 2, 4, 1, 5)

    def __init__(self) -> None:
        from adapter.digits.dataset import Digits, load_split

        splits = [load_split(s) for s in ("adapt", "eval", "train")]
        self.digits = Digits(
            np.concatenate([d.images for d in splits]), np.concatenate([d.labels for d in splits])
        )
        self._iter = self._generate()
        self.used = 0

    def _generate(self) -> Iterator[bytes]:
        from PIL import Image

        from adapter.digits.dataset import shifted

        for k in range(10_000):
            severity = self.SEVERITIES[k % len(self.SEVERITIES)]
            images = shifted(self.digits, "contrast", severity, seed=k).images
            if k >= len(self.SEVERITIES):  # later passes: a little noise, so pixels differ again
                images = shifted(type(self.digits)(images, self.digits.labels), "gaussian_noise", 1, k).images
            for image in images:
                buf = io.BytesIO()
                Image.fromarray(image).save(buf, format="PNG")
                yield buf.getvalue()

    def take(self, n: int) -> list[bytes]:
        self.used += n
        return [next(self._iter) for _ in range(n)]


@dataclass
class RoundRun:
    model: str  # "base" or "adapter"
    mode: str
    records: int
    samples: int = 0
    completion_tokens: int = 0
    prompt_tokens: int = 0
    failed: int = 0
    wall_s: float = 0.0
    cache_queries: float | None = None  # prefix cache: tokens looked up and found, over the round
    cache_hits: float | None = None
    cancelled: bool = False  # cut short at the end of a serving window: counts what completed until then


async def _one(
    sampler: VllmRollouts, model: str, image: bytes, question: str, plan: Plan, run: RoundRun
) -> None:
    try:
        out = await sampler.sample(
            model, image, "image/png", question, plan.samples, plan.temperature, plan.max_tokens
        )
    except httpx.HTTPError:
        run.failed += 1
        return
    run.samples += len(out.completions)
    run.completion_tokens += sum(len(c) for c in out.completions)
    run.prompt_tokens += len(out.prompt_token_ids)


def metric_sum(text: str, name: str) -> float | None:
    """Sum over label sets of one metric in a Prometheus exposition (vLLM labels by model and engine).

    >>> metric_sum('a_total{x="1"} 2.0\\na_total{x="2"} 3.0\\nb 1\\n', "a_total")
    5.0
    """
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.split("{")[0].split(" ")[0] == name
    ]
    return sum(values) if values else None


async def prefix_cache(http: httpx.AsyncClient) -> tuple[float | None, float | None]:
    text = (await http.get("/metrics")).text
    return metric_sum(text, "vllm:prefix_cache_queries_total"), metric_sum(
        text, "vllm:prefix_cache_hits_total"
    )


async def rollout_round(
    http: httpx.AsyncClient,
    sampler: VllmRollouts,
    model: str,
    images: list[bytes],
    plan: Plan,
    mode: Mode,
    into: list[RoundRun] | None = None,
) -> RoundRun:
    """One round; appended to `into` as it starts, so that a cancelled round still counts what it got
    (`wall_s` up to the cancellation, `cancelled` set)."""
    from adapter.digits.task import PROMPT

    label = "base" if model == SERVED_NAME else "adapter"
    run = RoundRun(label, mode.label, len(images))
    q0, h0 = await prefix_cache(http)
    started = time.monotonic()
    if into is not None:
        into.append(run)
    try:
        if mode.kind == "waves":
            for lo in range(0, len(images), mode.size):
                wave = images[lo : lo + mode.size]
                await asyncio.gather(*(_one(sampler, model, im, PROMPT, plan, run) for im in wave))
        else:
            slots = asyncio.Semaphore(mode.size)

            async def limited(image: bytes) -> None:
                async with slots:
                    await _one(sampler, model, image, PROMPT, plan, run)

            await asyncio.gather(*(limited(im) for im in images))
    except asyncio.CancelledError:
        run.cancelled = True
        raise
    finally:
        run.wall_s = time.monotonic() - started
    q1, h1 = await prefix_cache(http)
    if q0 is not None and q1 is not None and h0 is not None and h1 is not None:
        run.cache_queries, run.cache_hits = q1 - q0, h1 - h0
    return run


async def _answer(
    http: httpx.AsyncClient, body: dict[str, Any], started: float, out: list[dict[str, Any]]
) -> None:
    sent = time.monotonic()
    try:
        reply = await http.post("/v1/chat/completions", json=body)
        ok = reply.status_code == 200
    except httpx.HTTPError:
        ok = False
    out.append({"sent_s": round(sent - started, 3), "latency_s": time.monotonic() - sent, "ok": ok})


async def serve(
    http: httpx.AsyncClient, images: Images, plan: Plan, duration_s: float
) -> list[dict[str, Any]]:
    """Served answers, open-loop at `plan.rate` per second for `duration_s`; each one's latency."""
    from adapter.digits.task import PROMPT

    out: list[dict[str, Any]] = []
    tasks = []
    started = time.monotonic()
    pngs = images.take(max(1, int(duration_s * plan.rate)))
    for k, png in enumerate(pngs):
        await asyncio.sleep(max(0.0, started + k / plan.rate - time.monotonic()))
        body = image_chat_body(SERVED_ADAPTER, png, PROMPT, max_tokens=SERVED_MAX_TOKENS, priority=0)
        tasks.append(asyncio.create_task(_answer(http, body, started, out)))
    await asyncio.gather(*tasks)
    return out


async def serve_beside_rounds(
    http: httpx.AsyncClient, sampler: VllmRollouts, images: Images, plan: Plan, mode: Mode
) -> tuple[list[dict[str, Any]], list[RoundRun]]:
    """Served answers while candidate rollouts run back to back (the worker when it is behind); a round
    still running when the serving window ends is cancelled (vLLM aborts its requests)."""
    rounds: list[RoundRun] = []

    async def rollouts() -> None:
        while True:
            await rollout_round(http, sampler, ROLLOUT_NAME, images.take(plan.records), plan, mode, rounds)

    loop = asyncio.create_task(rollouts())
    await asyncio.sleep(0.2)  # the first round's requests are in
    try:
        answers = await serve(http, images, plan, plan.window_s)
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
    await asyncio.sleep(1.0)  # vLLM drains the aborted requests
    return answers, rounds


async def warm_up(http: httpx.AsyncClient, sampler: VllmRollouts, images: Images, plan: Plan) -> None:
    from adapter.digits.task import PROMPT

    for name in (SERVED_NAME, ROLLOUT_NAME, SERVED_ADAPTER):
        for png in images.take(2):
            body = image_chat_body(name, png, PROMPT, max_tokens=SERVED_MAX_TOKENS)
            (await http.post("/v1/chat/completions", json=body)).raise_for_status()
        await sampler.sample(
            name, images.take(1)[0], "image/png", PROMPT, plan.samples, plan.temperature, plan.max_tokens
        )


async def measure_engine(
    base_url: str, config: EngineConfig, adapter: Path, banned: list[int], images: Images, plan: Plan
) -> dict[str, Any]:
    """Everything measured on one running vLLM: rounds (base and adapter), serving quiet and beside rounds,
    and, on `plan.waves_on`, each wave mode's round and serving beside it."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None, keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=base_url, timeout=600, limits=limits) as http:
        for name in (ROLLOUT_NAME, SERVED_ADAPTER):
            reply = await http.post(
                "/v1/load_lora_adapter", json={"lora_name": name, "lora_path": str(adapter)}
            )
            reply.raise_for_status()
        sampler = VllmRollouts(base_url, ROLLOUT_PRIORITY, banned, timeout_s=600)
        await sampler.http.aclose()
        sampler.http = http  # one connection pool for everything
        await warm_up(http, sampler, images, plan)
        rounds: list[RoundRun] = []
        for rep in range(plan.repeats):
            order = (SERVED_NAME, ROLLOUT_NAME) if rep % 2 == 0 else (ROLLOUT_NAME, SERVED_NAME)
            for model in order:
                rounds.append(
                    await rollout_round(http, sampler, model, images.take(plan.records), plan, WORKER_MODE)
                )
        quiet = await serve(http, images, plan, plan.window_s)
        beside, beside_rounds = await serve_beside_rounds(http, sampler, images, plan, WORKER_MODE)
        waves = []
        if config.name == plan.waves_on:
            for mode in plan.wave_modes:
                run = await rollout_round(http, sampler, ROLLOUT_NAME, images.take(plan.records), plan, mode)
                answers, continuous = await serve_beside_rounds(http, sampler, images, plan, mode)
                waves.append(
                    {"mode": mode.label, "round": asdict(run), "serving": answers,
                     "rounds_beside": [asdict(r) for r in continuous]}
                )  # fmt: skip
    return {
        "rounds": [asdict(r) for r in rounds],
        "serving": {
            "quiet": quiet,
            "beside_rounds": beside,
            "rounds_beside": [asdict(r) for r in beside_rounds],
        },
        "waves": waves,
    }


@contextlib.contextmanager
def running_engine(
    config: EngineConfig, model: Path, port: int, settings: StackSettings, log: Path
) -> Iterator[tuple[str, float]]:
    """vLLM with `config`'s flags and LoRA ops; yields its URL and how long it took to start."""
    env = {**vllm_env(settings), "TTRV_VLLM_LORA_OPS": config.ops}
    proc = ManagedProcess(f"vllm-{config.name}", config.argv(model, port, settings), log, env=env)
    url = f"http://{settings.host}:{port}"
    started = time.monotonic()
    proc.start()
    try:
        proc.wait_ready(lambda: healthy(url), settings.vllm_startup_timeout_s, 1.0)
        yield url, time.monotonic() - started
    finally:
        proc.stop()


def prepare_adapter(model: Path, out_dir: Path, rank: int, images: Images) -> tuple[Path, list[int]]:
    """A LoRA as the worker makes them (rank `rank`, alpha 2 x rank, language model + vision), moved off its
    zero start by 8 supervised steps toward the true digits of 32 images, so that it changes answers a little
    without collapsing them; saved as the worker saves a version. Returns its folder and the token ids the
    worker bans from sampling."""
    import torch
    from PIL import Image

    from adapter.digits.task import PROMPT
    from adapter.lora import LoraSpec
    from adapter.policy import Policy
    from adapter.versions import save_version

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        policy = Policy(model, LoraSpec(rank=rank, alpha=2.0 * rank, vision=True), seed=0)
        digits = images.digits
        prompts = [policy.prompt(Image.fromarray(im), PROMPT) for im in digits.images[:32]]
        targets = [policy.processor.tokenizer.convert_tokens_to_ids(str(int(d))) for d in digits.labels[:32]]
        opt = torch.optim.AdamW([p for p in policy.model.parameters() if p.requires_grad], lr=3e-3)
        for _ in range(8):
            logprobs = policy.logprobs(
                [(p, [t, policy.eos_id]) for p, t in zip(prompts, targets, strict=True)]
            )
            loss = -torch.stack([lp.sum() for lp in logprobs]).mean()
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
        path = save_version(policy, out_dir, 1, {"bench": "rollouts", "rank": rank})
        return path, list(policy.suppressed)
    finally:
        torch.set_num_threads(threads)
