"""The gateway-overhead benchmark's report: the table of both paths per level, where the gateway's time
goes, and warnings about noise."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from bench.common import BUSY_WARNING, ci_text, fmt, met_mark
from bench.overhead_stats import P50_RATIO_MAX, THROUGHPUT_RATIO_MIN


def report_table(result: dict[str, Any]) -> Table:
    table = Table(title="gateway overhead: POST /v1/answer vs. the same request straight to vLLM")
    table.add_column("c", justify="right")
    table.add_column("metric")
    for name in ("direct", "gateway", "gw/direct", "95% CI"):
        table.add_column(name, justify="right")
    table.add_column("target")
    table.add_column("met")
    for level in result["levels"]:
        d, g, r, ci, met = level["direct"], level["gateway"], level["ratios"], level["ci95"], level["met"]
        c = str(level["concurrency"])
        table.add_row(
            c, "p50 latency (ms)", fmt(d["p50_ms"]), fmt(g["p50_ms"]), fmt(r["p50"], 3), ci_text(ci["p50"]),
            f"<= {P50_RATIO_MAX}", met_mark(met["p50"]),
        )  # fmt: skip
        table.add_row(
            "", "p95 latency (ms)", fmt(d["p95_ms"]), fmt(g["p95_ms"]), fmt(r["p95"], 3), ci_text(ci["p95"]),
            "", "",
        )  # fmt: skip
        table.add_row(
            "", "throughput (req/s)", fmt(d["throughput_rps"]), fmt(g["throughput_rps"]),
            fmt(r["throughput"], 3), ci_text(ci["throughput"]), f">= {THROUGHPUT_RATIO_MIN}",
            met_mark(met["throughput"]),
        )  # fmt: skip
        failed = f"{d['failed']}/{d['requests']}", f"{g['failed']}/{g['requests']}"
        style = "red" if d["failed"] or g["failed"] else ""
        table.add_row("", "failed (non-200)", *failed, "", "", "", "", style=style)
        table.add_row("", "p50 inside gateway (ms)", "", fmt(g["server_p50_ms"]), "", "", "", "", style="dim")
        table.add_section()
    return table


def breakdown_lines(level: dict[str, Any]) -> list[str]:
    """Where the gateway's time goes at one level: its mean latency split up, and CPU per request."""
    lines = []
    c, d, g, cpu = level["concurrency"], level["direct"], level["gateway"], level["cpu_ms_per_request"]
    if None not in (d["mean_ms"], g["mean_ms"], g["server_mean_ms"], g["app_mean_ms"]):
        outside, after = g["mean_ms"] - g["app_mean_ms"], g["app_mean_ms"] - g["server_mean_ms"]
        lines.append(
            f"c={c} means (ms): direct {d['mean_ms']:.1f}; gateway {g['mean_ms']:.1f} = handler "
            f"{g['server_mean_ms']:.1f} (body read, checks, the vLLM call) + after it {after:.1f} (record "
            f"write, response) + outside the app {outside:.1f} (uvicorn, HTTP, waiting for the event loop)"
        )
    if cpu:
        both = ", ".join(f"{name} {cpu[name]:.1f}" for name in ("vllm", "client") if name in cpu)
        gateway_only = ", ".join(f"{name} {cpu[name]:.1f}" for name in ("gateway", "redis") if name in cpu)
        lines.append(f"c={c} CPU per request (ms): {both} (either path); {gateway_only} (gateway path only)")
    return lines


def print_report(result: dict[str, Any], console: Console) -> None:
    console.print(report_table(result))
    cores = result["machine"]["cpu_count"]
    console.print(
        f"machine: {cores} CPU cores. vLLM (API server + engine core), the gateway, Redis and this client "
        "all run on them, so the gateway's CPU time is taken from vLLM's: the ratios include that contention."
    )
    console.print(
        "latency: client time to the full reply. throughput: successful replies / summed wall time of the "
        "path's blocks. 'p50 inside gateway': the gateway's own latency_ms (body read to answer; no "
        "uvicorn/HTTP, no Redis record write). 95% CI: paired bootstrap over block pairs."
    )
    for level in result["levels"]:
        for line in breakdown_lines(level):
            console.print(line)
    busy = result["machine"]["busy_cores_before"]
    if busy is not None and busy > BUSY_WARNING:
        console.print(
            f"[yellow]{busy:.2f} cores were busy with other work just before the stack started: it adds "
            "noise to both paths (interleaving keeps the comparison fair)[/yellow]"
        )
    for level in result["levels"]:
        other = level["other_busy_cores"]
        if other is not None and other > BUSY_WARNING:
            console.print(
                f"[yellow]c={level['concurrency']}: other work kept {other:.2f} cores busy on average while "
                "it was measured: both paths got less CPU, the ratios are noisier[/yellow]"
            )
        agreement = level["answer_agreement"]
        if agreement is not None and agreement < 1.0:
            console.print(
                f"[yellow]c={level['concurrency']}: only {agreement:.1%} of images got the same answer text "
                "on both paths: the two bodies may differ[/yellow]"
            )
    verdict = "[green]all targets met[/green]" if result["all_met"] else "[red]a target was missed[/red]"
    console.print(
        f"targets: p50 ratio <= {P50_RATIO_MAX}, throughput ratio >= {THROUGHPUT_RATIO_MIN}: {verdict}"
    )
