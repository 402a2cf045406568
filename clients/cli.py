"""`ttrv`: the command line of ttrv-server.

Heavy parts (torch, transformers, vLLM) are imported inside the commands that need them, so `ttrv --help`
and the client commands start fast and work where only the light core is installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from stack.settings import StackSettings

app = typer.Typer(help="Online test-time adaptation server for vision-language models.", no_args_is_help=True)
model_app = typer.Typer(help="The built-in tiny Qwen2-VL (digits).", no_args_is_help=True)
app.add_typer(model_app, name="model")
console = Console()

Seed = Annotated[int | None, typer.Option(help="model seed (default: TTRV_MODEL_SEED, else 0)")]


def _settings() -> StackSettings:
    return StackSettings()


@model_app.command("build")
def model_build(
    seed: Seed = None,
    force: Annotated[bool, typer.Option(help="rebuild even if a build of the same recipe exists")] = False,
) -> None:
    """Build, pretrain and evaluate the built-in model into the cache (reused when already built)."""
    from adapter.tinymodel.build import build_cli

    settings = _settings()
    path = build_cli(settings.home, settings.model_seed if seed is None else seed, force, console)
    console.print(f"model ready: [bold]{path}[/bold]")


@model_app.command("info")
def model_info(
    seed: Seed = None,
    path: Annotated[Path | None, typer.Option(help="a model folder (default: the built-in model's)")] = None,
) -> None:
    """Print the model card: prompt, image size, answers, seed and the recorded accuracies."""
    from adapter.tinymodel.card import CARD_FILE, ModelCard, card_table, model_dir

    settings = _settings()
    folder = path or model_dir(settings.home, settings.model_seed if seed is None else seed)
    if not (folder / CARD_FILE).exists():
        console.print(f"[red]no model card in {folder}[/red]: build the model first with `ttrv model build`")
        raise typer.Exit(1)
    card = ModelCard.read(folder)
    console.print_json(card.model_dump_json(exclude={"accuracy"}))
    console.print(card_table(card, all_severities=True))


@app.command("data")
def data(
    shift: Annotated[str, typer.Option(help="a shift name, 'clean', or 'all'")] = "all",
    severity: Annotated[
        int | None, typer.Option(help="1..5 (default: 3; with --shift all, every shift at it)")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of the shifts' random draws")] = 0,
    out: Annotated[Path | None, typer.Option(help="output folder (default: <TTRV_HOME>/data)")] = None,
) -> None:
    """Write built-in image streams (PNG + TTRV JSONL rows): an adaptation stream and an evaluation set."""
    from adapter.digits.dataset import write_stream
    from adapter.digits.shifts import SHIFTS
    from adapter.digits.task import DEFAULT_SEVERITY

    root = out or _settings().home / "data"
    level = DEFAULT_SEVERITY if severity is None else severity
    if shift == "all":
        wanted = [("clean", 0)] + [(name, level) for name in SHIFTS]
    elif shift == "clean" or shift in SHIFTS:
        wanted = [(shift, level)]
    else:
        console.print(
            f"[red]unknown shift {shift!r}[/red]: choose 'all', 'clean' or one of {', '.join(SHIFTS)}"
        )
        raise typer.Exit(2)
    for name, sev in wanted:
        paths = write_stream(root, name, sev, seed)
        console.print(f"{paths['adapt'].parent}: adapt.jsonl, eval.jsonl")


@app.command("demo")
def demo() -> None:
    """The main job on embedded defaults: build the model if missing, start Redis and vLLM, answer a digit."""
    from stack.demo import run_demo

    raise typer.Exit(run_demo(_settings(), console))


if __name__ == "__main__":
    app()
