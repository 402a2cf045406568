"""`ttrv model build`: make the built-in tiny Qwen2-VL, pretrain it on digits, evaluate it, cache it.

The result is a normal Hugging Face model folder (config, safetensors, tokenizer, processor, chat template)
that vLLM serves and transformers + PEFT train, plus `model_card.json`. It is built into a temporary folder
and renamed into place, so an interrupted build never leaves a half-written model that looks finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
import transformers
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from transformers import Qwen2VLForConditionalGeneration

from adapter.digits.dataset import load_split, stream_split
from adapter.digits.shifts import SHIFTS
from adapter.digits.task import ANSWERS, DEFAULT_SEVERITY, IMAGE_SIDE, PROMPT
from adapter.tinymodel.architecture import TinyArchitecture, build_processor, model_config
from adapter.tinymodel.batches import TaskInputs, preprocess
from adapter.tinymodel.card import CARD_FILE, Accuracies, ModelCard, card_table, model_dir
from adapter.tinymodel.evaluate import accuracy, answer_distribution
from adapter.tinymodel.pretrain import PretrainConfig, pretrain
from adapter.tinymodel.tokenizer import train_tokenizer

RECIPE_VERSION = 1  # bump when the build changes in a way the sizes below do not capture
DATA_SEED = 0  # the same draws `ttrv data` writes by default, so the card's numbers match those files


def recipe_hash(arch: TinyArchitecture, cfg: PretrainConfig, seed: int) -> str:
    spec = {"v": RECIPE_VERSION, "arch": arch.as_dict(), "cfg": cfg.as_dict(), "seed": seed, "prompt": PROMPT}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def is_built(path: Path, arch: TinyArchitecture, cfg: PretrainConfig, seed: int) -> bool:
    if not (path / CARD_FILE).exists():
        return False
    return ModelCard.read(path).recipe == recipe_hash(arch, cfg, seed)


def ensure_model(home: Path, seed: int = 0, console: Console | None = None, force: bool = False) -> Path:
    """The built-in model's folder, building it first unless a build of the same recipe is there."""
    arch, cfg = TinyArchitecture(), PretrainConfig()
    path = model_dir(home, seed)
    if force or not is_built(path, arch, cfg, seed):
        torch.set_num_threads(max(1, os.cpu_count() or 1))
        build(path, seed, arch, cfg, console or Console())
    return path


def build_cli(home: Path, seed: int, force: bool, console: Console) -> Path:
    """`ttrv model build`: build (or reuse) and show the card's accuracy table."""
    path = model_dir(home, seed)
    if not force and is_built(path, TinyArchitecture(), PretrainConfig(), seed):
        console.print(f"reusing {path} (same recipe); --force rebuilds it")
        console.print(card_table(ModelCard.read(path)))
        return path
    return ensure_model(home, seed, console, force=True)


def build(out: Path, seed: int, arch: TinyArchitecture, cfg: PretrainConfig, console: Console) -> ModelCard:
    started = time.monotonic()
    torch.manual_seed(seed)
    tokenizer = train_tokenizer(PROMPT, arch.vocab_size)
    processor = build_processor(arch, tokenizer)
    model = Qwen2VLForConditionalGeneration(model_config(arch, tokenizer))  # type: ignore[no-untyped-call]
    model = model.float()  # type: ignore[no-untyped-call]
    task = TaskInputs.build(processor)
    train = load_split("train")
    pixels = preprocess(processor, train.images)
    labels = torch.from_numpy(train.labels)

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, TextColumn("loss {task.fields[loss]:.3f}"), console=console) as bar:
        job = bar.add_task(f"pretraining (seed {seed})", total=cfg.steps, loss=float("nan"))
        losses = pretrain(
            model, task, pixels, labels, cfg, seed, lambda s, loss: bar.update(job, advance=1, loss=loss)
        )

    conditions = [("clean", 0)] + [(s, sev) for s in SHIFTS for sev in range(1, 6)]
    results: dict[str, Accuracies] = {}
    with Progress(*columns, console=console) as bar:
        job = bar.add_task("evaluating on held-out digits", total=len(conditions))
        for shift, severity in conditions:
            digits = stream_split("eval", shift, severity, DATA_SEED)
            probs = answer_distribution(model, task, preprocess(processor, digits.images))
            acc = accuracy(probs, task, torch.from_numpy(digits.labels), seed)
            key = "clean" if shift == "clean" else f"{shift}-{severity}"
            results[key] = Accuracies(**acc.__dict__)
            bar.advance(job)

    card = ModelCard(
        name=out.name,
        recipe=recipe_hash(arch, cfg, seed),
        seed=seed,
        prompt=PROMPT,
        image_side=IMAGE_SIDE,
        answers=list(ANSWERS),
        architecture=arch.as_dict(),
        pretraining=cfg.as_dict(),
        parameters=sum(p.numel() for p in model.parameters()),
        train_images=len(train),
        eval_images=len(load_split("eval")),
        build_seconds=round(time.monotonic() - started, 1),
        final_loss=losses[-1],
        accuracy=results,
        default_severity=DEFAULT_SEVERITY,
        versions={
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
        },
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    card.write(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    console.print(card_table(card))
    return card
