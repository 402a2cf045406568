"""Percentiles, ratios and paired bootstrap intervals of ratios, as the benchmarks report them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

BOOTSTRAP_RESAMPLES = 2000

Statistic = Callable[[np.ndarray], float]
LATENCY_STATS: dict[str, Statistic] = {
    "p50": lambda x: float(np.median(x)),
    "p95": lambda x: float(np.percentile(x, 95)),
}


def pct(values: Sequence[float] | np.ndarray, q: float, digits: int = 3) -> float | None:
    """The q-th percentile (numpy's linear interpolation), rounded; None for no values.

    >>> pct([10.0, 20.0, 30.0, 40.0], 50), pct([], 95)
    (25.0, None)
    """
    arr = np.asarray(values, dtype=np.float64)
    return round(float(np.percentile(arr, q)), digits) if arr.size else None


def ratio(num: float | None, den: float | None, digits: int = 4) -> float | None:
    """num / den, rounded; None when either is missing or den is 0.

    >>> ratio(3.0, 2.0), ratio(1.0, 0.0), ratio(None, 2.0)
    (1.5, None, None)
    """
    return round(num / den, digits) if num is not None and den else None


def paired_ratio_ci(
    num_groups: Sequence[np.ndarray],
    den_groups: Sequence[np.ndarray],
    stats: Mapping[str, Statistic] = LATENCY_STATS,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> dict[str, list[float] | None]:
    """95% intervals of stat(num) / stat(den), resampling the pairs (num_groups[i], den_groups[i]).

    A pair is two samples taken side by side (same images, or adjacent windows): resampling whole pairs keeps
    what they share, so the interval shows how much the ratio moves with the machine's noise. Fewer than two
    pairs give None.

    >>> rng = np.random.default_rng(1)
    >>> den = [rng.normal(100, 5, 50) for _ in range(8)]
    >>> ci = paired_ratio_ci([2 * d for d in den], den, resamples=200)
    >>> ci["p50"], ci["p95"]
    ([2.0, 2.0], [2.0, 2.0])
    """
    pairs = min(len(num_groups), len(den_groups))
    if pairs < 2:
        return dict.fromkeys(stats)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {name: [] for name in stats}
    for _ in range(resamples):
        idx = rng.integers(0, pairs, pairs)
        num = np.concatenate([num_groups[i] for i in idx])
        den = np.concatenate([den_groups[i] for i in idx])
        if num.size == 0 or den.size == 0:
            continue
        for name, stat in stats.items():
            draws[name].append(stat(num) / stat(den))
    return {
        name: [round(float(np.percentile(v, 2.5)), 4), round(float(np.percentile(v, 97.5)), 4)] if v else None
        for name, v in draws.items()
    }
