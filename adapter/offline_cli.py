"""`ttrv adapt`'s printing: a progress line per round and the before/after table."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rich.console import Console
from rich.table import Table

from adapter.offline import AdaptConfig, run_offline
from adapter.rewards import REWARD_KINDS
from adapter.round import RoundStats


def adapt_command(
    data: Path, eval_rows: Path, model: Path, reward: str, seed: int, out: Path | None, console: Console
) -> None:
    if reward not in REWARD_KINDS:
        raise SystemExit(f"unknown reward {reward!r}; choose one of {', '.join(REWARD_KINDS)}")
    cfg = AdaptConfig()
    cfg = dataclasses.replace(cfg, round=dataclasses.replace(cfg.round, reward=reward))

    def progress(i: int, s: RoundStats) -> None:
        console.print(
            f"round {i}: {s.informative}/{s.records} informative records, agreement {s.agreement_mean:.2f}, "
            f"reward {s.reward_mean:.3f}, kl {s.kl:.4f}"
        )

    result = run_offline(model, data, eval_rows, cfg, seed, out, progress)
    table = Table(title=f"greedy accuracy on {eval_rows.name} (reward {reward}, seed {seed})")
    for col in ("before", "after", "change", "rounds", "steps"):
        table.add_column(col, justify="right")
    before, after = float(result["before"]), float(result["after"])  # type: ignore[arg-type]
    table.add_row(
        f"{before:.1%}",
        f"{after:.1%}",
        f"{100 * (after - before):+.1f} pt",
        str(result["rounds"]),
        str(result["steps"]),
    )
    console.print(table)
