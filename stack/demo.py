"""`ttrv demo`: the main job on embedded defaults.

Builds the built-in model if it is missing, starts a local Redis and a local vLLM server with runtime LoRA
on, asks vLLM about one held-out digit and prints the answer, then stops what it started.
"""

from __future__ import annotations

import io
import time

import httpx
from PIL import Image
from rich.console import Console

from server.chat import image_chat_body
from stack.process import LaunchError, ManagedProcess
from stack.redis import start_redis
from stack.settings import StackSettings
from stack.vllm import SERVED_NAME, start_vllm


def run_demo(settings: StackSettings, console: Console) -> int:
    from adapter.digits.dataset import load_split
    from adapter.digits.task import PROMPT
    from adapter.tinymodel.build import ensure_model

    model = settings.model_path or ensure_model(settings.home, settings.model_seed, console)
    run_dir = settings.runs_dir / "demo"
    started: list[ManagedProcess] = []
    try:
        with console.status(f"starting Redis on port {settings.redis_port}"):
            started.append(start_redis(settings.redis_port, run_dir / "redis", run_dir / "redis.log"))
        console.print(f"Redis ready on {settings.host}:{settings.redis_port} (AOF on)")
        with console.status(f"starting vLLM on port {settings.vllm_port} (about 40 s on 2 cores)"):
            t0 = time.monotonic()
            started.append(start_vllm(model, settings.vllm_port, settings, run_dir / "vllm.log"))
        console.print(f"vLLM ready in {time.monotonic() - t0:.0f} s, LoRA on ({run_dir / 'vllm.log'})")

        digits = load_split("eval")
        png = io.BytesIO()
        Image.fromarray(digits.images[0]).save(png, format="PNG")
        body = image_chat_body(SERVED_NAME, png.getvalue(), PROMPT)
        t0 = time.monotonic()
        reply = httpx.post(
            f"http://{settings.host}:{settings.vllm_port}/v1/chat/completions", json=body, timeout=60
        )
        reply.raise_for_status()
        answer = reply.json()["choices"][0]["message"]["content"]
        console.print(
            f"question: {PROMPT}\nimage: held-out digit #0 (label {digits.labels[0]})\n"
            f"answer: [bold]{answer}[/bold] in {1000 * (time.monotonic() - t0):.0f} ms"
        )
        return 0
    except LaunchError as err:
        console.print(f"[red]{err}[/red]")
        return 1
    finally:
        for proc in reversed(started):
            proc.stop()
