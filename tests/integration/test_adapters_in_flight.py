"""Every request in a vLLM batch is computed with its own weights, however many adapters share the batch and
while adapters are loaded and unloaded beside it.

The worker samples rollouts from candidates, and loads and unloads candidates, while the gateway serves the
current version (or the base model) from the same vLLM. vLLM 0.32's CPU LoRA kernels indexed the adapter
slots with -1 for tokens without an adapter, which is the *last* slot in Python: once an adapter had been put
there, base-model requests were computed with its weights (scripts/bootstrap.sh patches this). Unpatched,
this test changed 107 of 240 greedy answers with 8 slots, and a static variant (no loading during the run)
117 of 240 with 4 slots; patched, none.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from adapter.digits.dataset import stream_split
from adapter.digits.task import PROMPT
from adapter.versions import save_version
from core.answers import extract_answer
from core.chat import image_chat_body
from stack.settings import StackSettings
from stack.worker import loaded_adapters_for
from tests.integration.conftest import VllmServer
from tests.integration.helpers import digit_policy, png_bytes

IMAGES = stream_split("eval", "clean", 0, seed=0).images
ASKED = range(0, 40)  # greedy answers on these ...
SAMPLED = range(40, 80)  # ... while the samplers sample on these
REPEATS = 3  # each asked image, per served name


async def _greedy(http: httpx.AsyncClient, name: str, image: int) -> str:
    body = image_chat_body(name, png_bytes(IMAGES[image]), PROMPT)
    reply = await http.post("/v1/chat/completions", json=body)
    reply.raise_for_status()
    return extract_answer(reply.json()["choices"][0]["message"]["content"]) or ""


async def _answers_beside_samplers(
    base_url: str, served: list[str], samplers: list[str], churned: Path
) -> tuple[dict[str, list[str]], list[tuple[str, int, str]]]:
    """Each served name's greedy answers alone, then again while every sampler samples (n=16, T=1) and the
    adapter folder `churned` is loaded under a new name, asked once and unloaded, again and again."""
    async with httpx.AsyncClient(base_url=base_url, timeout=300) as http:
        alone = {name: [await _greedy(http, name, i) for i in ASKED] for name in served}
        done = asyncio.Event()

        async def sample(name: str, offset: int) -> None:
            k = offset
            while not done.is_set():
                image = SAMPLED[k % len(SAMPLED)]
                body = image_chat_body(
                    name, png_bytes(IMAGES[image]), PROMPT, n=16, temperature=1.0, priority=10
                )
                (await http.post("/v1/chat/completions", json=body)).raise_for_status()
                k += 1

        async def churn() -> None:
            k = 0
            while not done.is_set():
                name = f"inflight-churn-{k}"
                body = {"lora_name": name, "lora_path": str(churned)}
                (await http.post("/v1/load_lora_adapter", json=body)).raise_for_status()
                await _greedy(http, name, SAMPLED[k % len(SAMPLED)])
                (await http.post("/v1/unload_lora_adapter", json={"lora_name": name})).raise_for_status()
                k += 1

        slots = asyncio.Semaphore(4)

        async def ask(name: str, image: int) -> tuple[str, int, str]:
            async with slots:
                return name, image, await _greedy(http, name, image)

        tasks = [asyncio.create_task(sample(n, 7 * k)) for k, n in enumerate(samplers)]
        tasks.append(asyncio.create_task(churn()))
        try:
            beside = await asyncio.gather(*(ask(n, i) for _ in range(REPEATS) for i in ASKED for n in served))
        finally:
            done.set()
            await asyncio.gather(*tasks)
    return alone, list(beside)


def test_greedy_answers_do_not_change_while_other_adapters_sample_and_come_and_go(
    vllm_server: VllmServer, stack_settings: StackSettings, tmp_path: Path
) -> None:
    # As many adapters as the worker may keep loaded in this vLLM: one served, the others sampling, and one
    # loaded and unloaded again and again (a candidate under the gate, a retired version).
    digits = [1, 3, 5, 8, 2, 6][: loaded_adapters_for(stack_settings.vllm_max_loras)]
    paths = [
        save_version(digit_policy(vllm_server.model_dir, d, IMAGES[:16]), tmp_path, d, {}) for d in digits
    ]
    names = [f"inflight-d{d}" for d in digits[:-1]]
    with vllm_server.client() as http:
        loaded = {m["id"] for m in http.get("/v1/models").json()["data"]} - {vllm_server.served_name}
        for name in loaded:  # earlier tests' adapters: only this test's are in flight
            http.post("/v1/unload_lora_adapter", json={"lora_name": name})
        for name, path in zip(names, paths, strict=False):
            reply = http.post("/v1/load_lora_adapter", json={"lora_name": name, "lora_path": str(path)})
            assert reply.status_code == 200, reply.text
    served = [vllm_server.served_name, names[0]]  # the base model, and an adapter being served
    try:
        alone, beside = asyncio.run(
            _answers_beside_samplers(vllm_server.base_url, served, names[1:], paths[-1])
        )
    finally:
        with vllm_server.client() as http:
            for name in names:
                http.post("/v1/unload_lora_adapter", json={"lora_name": name})
    assert alone[served[0]] != alone[served[1]], "base and adapter answer alike: the check would be blind"
    changed = [(n, i, a, alone[n][ASKED.index(i)]) for n, i, a in beside if a != alone[n][ASKED.index(i)]]
    assert not changed, (
        f"{len(changed)} of {len(beside)} greedy answers changed while other adapters sampled or swapped "
        f"(name, image, answer, answer alone): {changed[:8]}"
    )
