"""Headline rows: the few numbers of a benchmark that `bench.run_all` puts in one table, with their targets.

Each benchmark's `summary(result)` returns `{"benchmark": name, "headlines": [headline(...), ...]}`; a row
is a plain dict so it goes into JSON as it is.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any, Literal

Op = Literal["<=", ">=", "==", "<", ">"]
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "<": operator.lt,
    ">": operator.gt,
}


def meets(value: float | None, op: Op | None, bound: float | None) -> bool | None:
    """Whether `value op bound` holds; None when there is no target, and False when there is no value.

    >>> meets(1.02, "<=", 1.05), meets(0.9, ">=", 0.95), meets(None, "==", 0), meets(3.0, None, None)
    (True, False, False, None)
    """
    if op is None or bound is None:
        return None
    return value is not None and _OPS[op](value, bound)


def headline(
    metric: str,
    value: float | None,
    unit: str = "",
    op: Op | None = None,
    bound: float | None = None,
    note: str = "",
) -> dict[str, Any]:
    """One row: a number, its unit, its target (as text) and whether it met it.

    >>> headline("failed requests", 0, op="==", bound=0)["met"]
    True
    >>> headline("p95 ratio", 1.7, op="<=", bound=1.5)["target"]
    '<= 1.5'
    """
    return {
        "metric": metric,
        "value": value,
        "unit": unit,
        "target": f"{op} {bound:g}" if op is not None and bound is not None else "",
        "met": meets(value, op, bound),
        "note": note,
    }
