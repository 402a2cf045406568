"""The hot-swap benchmark's tables: one row per swap, then serving in swap windows against quiet ones."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from bench.common import BUSY_WARNING, ci_text, fmt, met_mark
from bench.swap_summary import FIRST_ANSWER_MAX_S, P95_RATIO_MAX

SWAP_COLUMNS = (
    "swap", "answers", "load (s)", "promote (s)", "swap call (s)", "first answer (s)", "served",
    "other answers",
)  # fmt: skip


def swap_table(result: dict[str, Any]) -> Table:
    table = Table(title="hot swaps: candidate registered -> loaded -> promoted -> first answer naming it")
    for name in SWAP_COLUMNS:
        table.add_column(name, justify="right")
    for row in result["swaps"]:
        late = row["first_answer_s"] is None or row["first_answer_s"] > FIRST_ANSWER_MAX_S
        table.add_row(
            f"v{row['previous']} -> v{row['version']}", str(row["digit"]), fmt(row["load_s"], 3),
            fmt(row["promote_s"], 3), fmt(row["swap_call_s"], 3), fmt(row["first_answer_s"], 3),
            str(row["served"]), str(row["other_answers"]), style="red" if late else "",
        )  # fmt: skip
    table.add_section()
    for stat in ("p50", "max"):
        table.add_row(
            stat, "", fmt(result["load_s"][stat], 3), fmt(result["promote_s"][stat], 3),
            fmt(result["swap_call_s"][stat], 3), fmt(result["first_answer_s"][stat], 3), "", "",
        )  # fmt: skip
    return table


def latency_table(result: dict[str, Any]) -> Table:
    quiet, swap, caught = result["latency"]["quiet"], result["latency"]["swap"], result["in_swap_call"]
    r, ci, met = result["ratios"], result["ci95"], result["met"]
    concurrency = result["plan"]["concurrency"]
    table = Table(title=f"serving during swaps vs. without (closed loop, {concurrency} clients)")
    for name in ("metric", "quiet", "swap", "swap/quiet", "95% CI", "target", "met"):
        table.add_column(name, justify="left" if name == "metric" else "right")
    first, misses = result["first_answer_s"], result["adapter_misses"]
    rows = [
        ("time to first answer, max (s)", "", fmt(first["max"], 3), "", "", f"<= {FIRST_ANSWER_MAX_S}",
         met_mark(met["first_answer"])),
        ("p50 latency (ms)", fmt(quiet["p50_ms"]), fmt(swap["p50_ms"]), fmt(r["p50"], 3), ci_text(ci["p50"]),
         "", ""),
        ("p95 latency (ms)", fmt(quiet["p95_ms"]), fmt(swap["p95_ms"]), fmt(r["p95"], 3), ci_text(ci["p95"]),
         f"<= {P95_RATIO_MAX}", met_mark(met["p95_ratio"])),
        ("p95, in flight during a swap call (ms)", fmt(quiet["p95_ms"]), fmt(caught["p95_ms"]),
         fmt(caught["p95_vs_quiet"], 3), f"n={caught['ok']}", "", ""),
        ("throughput (req/s)", fmt(quiet["throughput_rps"]), fmt(swap["throughput_rps"]),
         fmt(r["throughput"], 3), "", "", ""),
        ("failed (non-200) / sent", f"{quiet['failed']}/{quiet['requests']}",
         f"{swap['failed']}/{swap['requests']}", "", "", f"0 of all {result['requests']}",
         met_mark(met["failures"])),
        ("gateway adapter misses", "", fmt(misses, 0), "", "", "0",
         met_mark(None if misses is None else misses == 0)),
    ]  # fmt: skip
    for row in rows:
        table.add_row(*row)
    return table


def print_report(result: dict[str, Any], console: Console) -> None:
    console.print(swap_table(result))
    console.print(latency_table(result))
    console.print(
        "first answer: from just before the candidate is registered (its folder already saved) to the "
        "first completed reply naming it. swap call: load_candidate + promote (promote loads, asks the new "
        "name one request, then moves the pointer). latency: client time to the full reply, of requests "
        "sent in the window; 95% CI: bootstrap over window pairs. in flight during a swap call: requests "
        "that overlap registration to promoted, the ones a swap can slow directly. other answers: replies "
        "naming the version whose answer is not the digit it was trained to give (0: every answer came "
        "from the weights it names)."
    )
    if not all(row["unload_in_window"] for row in result["swaps"]):
        console.print(
            "[yellow]an old version's unload fell after its swap window: use a longer window[/yellow]"
        )
    machine = result["machine"]
    for key, when in (
        ("busy_cores_before", "just before the stack started"),
        ("other_busy_cores", "meanwhile"),
    ):
        busy = machine.get(key)
        if busy is not None and busy > BUSY_WARNING:
            console.print(f"[yellow]other work kept {busy:.2f} cores busy {when}: noisier numbers[/yellow]")
    verdict = "[green]all targets met[/green]" if result["all_met"] else "[red]a target was missed[/red]"
    console.print(
        f"targets: first answer <= {FIRST_ANSWER_MAX_S} s after every swap, p95 ratio <= {P95_RATIO_MAX}, "
        f"no failed request: {verdict}"
    )
