"""`ttrv`: the command line of ttrv-server.

Heavy parts (torch, transformers, vLLM) are imported inside the commands that need them, so `ttrv --help`
and the client commands start fast and work where only the light core is installed. Client commands print
a server error (`TTRVError`) in red and exit 1, without a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from clients.errors import NO_REPLY, TTRVError
from clients.models import AdapterList
from clients.sdk import AsyncTTRVClient, TTRVClient
from core.rows import RowError, read_rows
from stack.replay import replay as replay_rows
from stack.replay import report_table
from stack.settings import StackSettings

app = typer.Typer(help="Online test-time adaptation server for vision-language models.", no_args_is_help=True)
model_app = typer.Typer(help="The built-in tiny Qwen2-VL (digits).", no_args_is_help=True)
app.add_typer(model_app, name="model")
console = Console()

Seed = Annotated[int | None, typer.Option(help="model seed (default: TTRV_MODEL_SEED, else 0)")]
Url = Annotated[str | None, typer.Option(help="gateway URL (default: TTRV_URL, else http://127.0.0.1:8000)")]
ApiKey = Annotated[str | None, typer.Option(help="API key (default: TTRV_API_KEY)")]
AdminToken = Annotated[str | None, typer.Option(help="admin token (default: TTRV_ADMIN_TOKEN)")]
AsJson = Annotated[bool, typer.Option("--json", help="print the reply as JSON")]


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


@app.command("worker")
def worker() -> None:
    """Run the adaptation worker on the live stream (settings: TTRV_* variables, see the README)."""
    from adapter.settings import WorkerSettings
    from adapter.worker import run_worker
    from core.settings import read_settings

    run_worker(read_settings(WorkerSettings, "ttrv worker"))


@app.command("export")
def export(
    version: Annotated[int, typer.Argument(help="the version to export (see `ttrv adapters`)")],
    out: Annotated[Path, typer.Argument(help="a new folder to write it to")],
    merge: Annotated[
        bool, typer.Option(help="merge the LoRA into the base weights (a plain HF model)")
    ] = False,
) -> None:
    """Write a version as a standalone PEFT folder (or merged weights) with a model card."""
    from adapter.export import export_version
    from adapter.settings import WorkerSettings
    from core.registry import UnknownVersionError, VersionPrunedError
    from core.settings import read_settings

    try:
        folder = export_version(read_settings(WorkerSettings, "ttrv export"), version, out, merge)
    except (UnknownVersionError, VersionPrunedError, FileExistsError) as err:
        console.print(f"[red]{err}[/red]")
        raise typer.Exit(2) from None
    console.print(f"ttrv-v{version} exported to {folder} ({'merged weights' if merge else 'PEFT adapter'})")


@app.command("adapt")
def adapt(
    data: Annotated[Path, typer.Argument(help="unlabeled adaptation rows (TTRV JSONL)")],
    eval_rows: Annotated[Path, typer.Option("--eval", help="labeled evaluation rows (TTRV JSONL)")],
    model: Annotated[Path | None, typer.Option(help="model folder (default: the built-in model)")] = None,
    reward: Annotated[str, typer.Option(help="ttrv, frequency, majority or random (control)")] = "ttrv",
    seed: Annotated[int, typer.Option(help="seed of sampling and shuffling")] = 0,
    out: Annotated[Path | None, typer.Option(help="save the adapted LoRA here")] = None,
) -> None:
    """The paper's protocol: adapt on unlabeled rows, then print greedy accuracy before and after."""
    from adapter.offline_cli import adapt_command

    adapt_command(data, eval_rows, model or _settings().home / "models" / "tiny-qwen2vl-digits-s0",
                  reward, seed, out, console)  # fmt: skip


@app.command("demo")
def demo(
    shift: Annotated[
        str | None, typer.Option(help="shift of the drifted stream: contrast (default), brightness, ...")
    ] = None,
    severity: Annotated[int | None, typer.Option(min=1, max=5, help="severity of the shift, 1..5")] = None,
    rate: Annotated[float | None, typer.Option(min=0.0, help="requests per second of the stream")] = None,
    drifted: Annotated[
        int | None, typer.Option(min=1, help="drifted requests (cycling over the 400 shifted images)")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="seed of the worker's sampling and the feedback draw")
    ] = None,
    wait: Annotated[bool, typer.Option(help="keep the stack up afterwards, until Ctrl-C")] = True,
) -> None:
    """The main job: the whole stack on the built-in model, a clean then a drifting stream, adaptation."""
    from adapter.digits.shifts import SHIFTS
    from stack.demo import run_demo

    if shift is not None and shift not in SHIFTS:
        console.print(f"[red]unknown shift {shift!r}[/red]: choose one of {', '.join(SHIFTS)}")
        raise typer.Exit(2)
    chosen = {"demo_shift": shift, "demo_severity": severity, "demo_rate": rate,
              "demo_drifted_requests": drifted, "demo_seed": seed}  # fmt: skip
    settings = _settings().model_copy(update={k: v for k, v in chosen.items() if v is not None})
    raise typer.Exit(run_demo(settings, console, wait=wait))


@app.command("up")
def up() -> None:
    """The whole stack (Redis, vLLM, gateway, worker, Prometheus) with no replay, until Ctrl-C."""
    from stack.demo import run_up

    raise typer.Exit(run_up(_settings(), console))


@contextmanager
def _server_errors() -> Iterator[None]:
    """A `TTRVError` becomes a red message and exit status 1: the message already says what to do."""
    try:
        yield
    except TTRVError as error:
        status = "no reply" if error.status == NO_REPLY else f"error {error.status}"
        console.print(f"[red]{status} ({escape(error.type)})[/red]: {escape(error.message)}")
        raise typer.Exit(1) from None


def _client(url: str | None, api_key: str | None = None, admin_token: str | None = None) -> TTRVClient:
    return TTRVClient(url, api_key=api_key, admin_token=admin_token)


def _print_json(data: Any) -> None:
    console.print_json(data=data)


@app.command("answer")
def answer(
    image: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="image file")],
    question: Annotated[str, typer.Argument(help="question about the image")],
    option: Annotated[
        list[str] | None, typer.Option("--option", "-o", help="a multiple-choice option (repeatable)")
    ] = None,
    samples: Annotated[int | None, typer.Option(help="self-consistency votes at serve time, 1..32")] = None,
    stream: Annotated[str | None, typer.Option(help="adaptation stream (tenant/domain)")] = None,
    request_id: Annotated[str | None, typer.Option(help="idempotency key (default: a new uuid4)")] = None,
    as_json: AsJson = False,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Ask the gateway one question about one image and print the answer."""
    with _server_errors(), _client(url, api_key) as client:
        reply = client.answer(
            image, question, options=option or None, request_id=request_id, stream=stream, samples=samples
        )
    if as_json:
        _print_json(reply.model_dump())
        return
    confidence = "" if reply.confidence is None else f", confidence {reply.confidence:.0%}"
    console.print(
        f"[bold]{escape(reply.answer)}[/bold]  (adapter v{reply.adapter_version}, "
        f"{reply.latency_ms:.1f} ms{confidence}, id {escape(reply.id)})"
    )


@app.command("replay")
def replay(
    data: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="TTRV JSONL rows")],
    rate: Annotated[float, typer.Option(help="requests per second (0: as fast as possible)")] = 0.0,
    concurrency: Annotated[int, typer.Option(min=1, help="requests in flight at most")] = 4,
    limit: Annotated[int | None, typer.Option(min=0, help="send at most this many rows")] = None,
    feedback_share: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="share of answered rows that send their label as feedback")
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="seed of the feedback draw")] = 0,
    as_json: AsJson = False,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Replay a stream of rows through the gateway; print counts and served accuracy per adapter version."""
    try:
        report = replay_rows(
            read_rows(data),
            lambda: AsyncTTRVClient(url, api_key=api_key),
            rate=rate,
            concurrency=concurrency,
            limit=limit,
            feedback_share=feedback_share,
            seed=seed,
            show_progress=not as_json,
            console=console,
        )
    except RowError as error:
        console.print(f"[red]bad data[/red]: {escape(str(error))}")
        raise typer.Exit(1) from None
    if as_json:
        _print_json(report.model_dump(mode="json"))
        return
    console.print(report_table(report))
    for status, message in sorted(report.errors.items()):
        console.print(f"[red]first error {status}[/red]: {escape(message)}")


def _adapters_table(registry: AdapterList) -> Table:
    table = Table(title=f"adapters (current: v{registry.current})")
    for column in ("version", "status", "parent", "created", "metrics", "reasons"):
        table.add_column(column)
    for info in sorted(registry.versions, key=lambda v: v.version):
        mark = " *" if info.version == registry.current else ""
        table.add_row(
            f"v{info.version}{mark}",
            info.status,
            "" if info.parent is None else f"v{info.parent}",
            info.created_at or "",
            ", ".join(f"{k}={v:.3g}" for k, v in sorted(info.metrics.items())),
            escape("; ".join(info.reasons)),
        )
    return table


@app.command("adapters")
def adapters(as_json: AsJson = False, url: Url = None, api_key: ApiKey = None) -> None:
    """List adapter versions with their status and metrics; * marks the one served."""
    with _server_errors(), _client(url, api_key) as client:
        registry = client.adapters()
    if as_json:
        _print_json(registry.model_dump())
    else:
        console.print(_adapters_table(registry))


@app.command("promote")
def promote(
    version: Annotated[int, typer.Argument(min=0, help="version to serve (older: rollback, 0: base model)")],
    url: Url = None,
    admin_token: AdminToken = None,
) -> None:
    """Serve an adapter version (admin)."""
    with _server_errors(), _client(url, admin_token=admin_token) as client:
        result = client.promote(version)
    if isinstance(result, AdapterList):
        console.print(_adapters_table(result))
    else:
        _print_json(result)


@app.command("pause")
def pause(url: Url = None, admin_token: AdminToken = None) -> None:
    """Pause adaptation rounds (admin); serving goes on with the current adapter."""
    with _server_errors(), _client(url, admin_token=admin_token) as client:
        _print_json(client.pause())


@app.command("resume")
def resume(url: Url = None, admin_token: AdminToken = None) -> None:
    """Resume adaptation rounds (admin)."""
    with _server_errors(), _client(url, admin_token=admin_token) as client:
        _print_json(client.resume())


@app.command("serve")
def serve(
    host: Annotated[str | None, typer.Option(help="bind address (default: the gateway's settings)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default: the gateway's settings)")] = None,
) -> None:
    """Run the gateway (FastAPI) in this process."""
    from server.main import serve as run_gateway

    run_gateway(host, port)


if __name__ == "__main__":
    app()
