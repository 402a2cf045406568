"""The gateway-overhead benchmark's arithmetic: one level's blocks in, latency, throughput, their ratios with
paired bootstrap intervals, and whether both paths gave the same answers out.

Pure functions of what `bench.overhead_measure` recorded, so they run without a stack.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from bench.overhead_measure import PATHS, Block, LevelData, LevelPlan
from bench.stats import BOOTSTRAP_RESAMPLES, pct, ratio

P50_RATIO_MAX = 1.05  # gateway p50 latency at most 5% above direct
THROUGHPUT_RATIO_MIN = 0.95  # gateway throughput at least 95% of direct


def _reply_text(path: str, body: bytes) -> tuple[str, float | None]:
    """The answer text of a 200 reply, and the gateway's own `latency_ms` (None for direct)."""
    data = json.loads(body)
    if path == "direct":
        return str(data["choices"][0]["message"]["content"] or ""), None
    return str(data["text"]), float(data["latency_ms"])


def path_stats(path: str, blocks: Sequence[Block]) -> dict[str, Any]:
    replies = [r for b in blocks for r in b.replies]
    ok_ms = np.array([r.latency_s * 1000 for r in replies if r.ok], dtype=np.float64)
    wall_s = sum(b.wall_s for b in blocks)
    server_ms = np.array(
        [ms for r in replies if r.ok and (ms := _reply_text(path, r.body)[1]) is not None], dtype=np.float64
    )
    stats: dict[str, Any] = {
        "requests": len(replies),
        "ok": int(ok_ms.size),
        "failed": len(replies) - int(ok_ms.size),
        "failed_statuses": dict(Counter(str(r.status) for r in replies if not r.ok)),
        "failed_samples": [  # the first few failed replies, to see what went wrong
            {"status": r.status, "body": r.body[:300].decode(errors="replace")}
            for r in [r for r in replies if not r.ok][:5]
        ],
        "p50_ms": pct(ok_ms, 50),
        "p95_ms": pct(ok_ms, 95),
        "mean_ms": round(float(ok_ms.mean()), 3) if ok_ms.size else None,
        "wall_s": round(wall_s, 3),
        "throughput_rps": round(ok_ms.size / wall_s, 3) if wall_s > 0 else None,
    }
    if path == "gateway":
        stats["server_p50_ms"] = pct(server_ms, 50)  # the gateway's own latency_ms: no HTTP, no record write
        stats["server_mean_ms"] = round(float(server_ms.mean()), 3) if server_ms.size else None
    return stats


def answer_agreement(blocks: dict[str, list[Block]]) -> float | None:
    """Share of images whose greedy answer text is the same on both paths (both do the same work)."""
    texts: dict[str, dict[int, str]] = {path: {} for path in PATHS}
    for path in PATHS:
        for block in blocks[path]:
            for r in block.replies:
                if r.ok:
                    texts[path].setdefault(r.image, _reply_text(path, r.body)[0])
    common = texts["direct"].keys() & texts["gateway"].keys()
    if not common:
        return None
    return round(sum(texts["direct"][i] == texts["gateway"][i] for i in common) / len(common), 4)


def bootstrap_intervals(
    direct: Sequence[Block], gateway: Sequence[Block], seed: int = 0
) -> dict[str, list[float] | None]:
    """95% intervals of the gateway/direct ratios, resampling block pairs (same images, same moment)."""
    pairs = min(len(direct), len(gateway))
    names = ("p50", "p95", "throughput")
    if pairs < 2:
        return dict.fromkeys(names)
    lat = {
        "d": [b.ok_latencies_s() for b in direct[:pairs]],
        "g": [b.ok_latencies_s() for b in gateway[:pairs]],
    }
    ok = {k: np.array([v.size for v in lat[k]], dtype=np.float64) for k in lat}
    wall = {
        "d": np.array([b.wall_s for b in direct[:pairs]]),
        "g": np.array([b.wall_s for b in gateway[:pairs]]),
    }
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(BOOTSTRAP_RESAMPLES):
        idx = rng.integers(0, pairs, pairs)
        d = np.concatenate([lat["d"][i] for i in idx])
        g = np.concatenate([lat["g"][i] for i in idx])
        if d.size == 0 or g.size == 0:
            continue
        draws["p50"].append(float(np.median(g) / np.median(d)))
        draws["p95"].append(float(np.percentile(g, 95) / np.percentile(d, 95)))
        rate_d = ok["d"][idx].sum() / wall["d"][idx].sum()
        rate_g = ok["g"][idx].sum() / wall["g"][idx].sum()
        draws["throughput"].append(float(rate_g / rate_d))
    return {
        name: [round(float(np.percentile(v, 2.5)), 4), round(float(np.percentile(v, 97.5)), 4)] if v else None
        for name, v in draws.items()
    }


def summarize_level(plan: LevelPlan, data: LevelData) -> dict[str, Any]:
    blocks = data.blocks
    direct, gateway = path_stats("direct", blocks["direct"]), path_stats("gateway", blocks["gateway"])
    gateway["app_mean_ms"] = data.app_ms_mean
    ratios = {
        "p50": ratio(gateway["p50_ms"], direct["p50_ms"]),
        "p95": ratio(gateway["p95_ms"], direct["p95_ms"]),
        "throughput": ratio(gateway["throughput_rps"], direct["throughput_rps"]),
    }
    return {
        "concurrency": plan.concurrency,
        "requests_per_path": plan.requests,
        "block": plan.block,
        "warmup_per_path": plan.warmup,
        "direct": direct,
        "gateway": gateway,
        "ratios": ratios,
        "ci95": bootstrap_intervals(blocks["direct"], blocks["gateway"]),
        "met": {
            "p50": ratios["p50"] is not None and ratios["p50"] <= P50_RATIO_MAX,
            "throughput": ratios["throughput"] is not None and ratios["throughput"] >= THROUGHPUT_RATIO_MIN,
        },
        "answer_agreement": answer_agreement(blocks),
        "cpu_ms_per_request": data.cpu_ms,
        "other_busy_cores": data.other_cores,
        "raw": {
            path: {
                "latency_ms": [round(r.latency_s * 1000, 3) for b in blocks[path] for r in b.replies],
                "status": [r.status for b in blocks[path] for r in b.replies],
                "block_wall_s": [round(b.wall_s, 4) for b in blocks[path]],
            }
            for path in PATHS
        },
    }
